"""Evaluation sets: a BEIR folder or one JSON file, loaded and checked; what is left out, dropped or refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragtrain.data.evaldata import load_eval_data
from tests.conftest import DOCS, QUERIES, user_error, write_beir_folder


def test_queries_without_relevant_documents_are_excluded_and_counted(beir):
    data = load_eval_data(beir, "test")
    assert data.query_ids == ["q1", "q2", "q3"] and data.excluded_queries == 1
    assert data.qrels["q2"] == {"d2": 2}


def test_json_eval_file_in_sentence_transformers_schema(tmp_path):
    path = tmp_path / "test_eval.json"
    path.write_text(json.dumps({"queries": QUERIES, "corpus": {**DOCS, "d6": {"title": "T", "text": "body"}},
                                "relevant_docs": {"q1": ["d1"], "q2": {"d2": 3}, "q4": []}}))
    data = load_eval_data(path, "ignored")
    assert data.query_ids == ["q1", "q2"] and data.excluded_queries == 1
    assert data.qrels == {"q1": {"d1": 1}, "q2": {"d2": 3}}
    assert data.corpus_texts[-1] == "T body"


@pytest.mark.parametrize("rows, words", [
    ([("q1", "d9", 1), ("q2", "d8", 1), ("q3", "d1", 1)], ["2 document ids", "'d8'"]),
    ([("q9", "d1", 1)], ["1 query ids", "'q9'"]),
    ([], ["no judgements"]),
])
def test_bad_qrels_are_one_clear_line_with_exit_code_2(tmp_path, rows, words):
    beir = write_beir_folder(tmp_path / "eval", rows)
    line = user_error(["evaluate", "bm25", "--eval-data", str(beir)])
    assert all(word in line for word in words), line


def test_missing_split_names_the_available_ones(beir):
    line = user_error(["evaluate", "bm25", "--eval-data", str(beir), "--split", "dev"])
    assert "dev.tsv not found" in line and "available: test" in line


def test_missing_corpus_file(beir):
    (beir / "corpus.jsonl").unlink()
    assert "corpus.jsonl not found" in user_error(["evaluate", "bm25", "--eval-data", str(beir)])


def _rows(path: Path, rows: list) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


@pytest.mark.parametrize("file, content, words", [
    ("corpus.jsonl", [{"title": "", "text": "no id"}], ["corpus.jsonl:1", "'_id'"]),
    ("queries.jsonl", [{"_id": "q1", "text": "cat tree"}, {"text": "no id"}], ["queries.jsonl:2", "'_id'"]),
    ("corpus.jsonl", [{"_id": ["d1"], "text": "a list as id"}], ["corpus.jsonl:1", "'_id'"]),
    ("corpus.jsonl", [{"_id": "d1", "text": ["not", "text"]}], ["corpus.jsonl:1", "'text' must be a string"]),
    ("queries.jsonl", [{"_id": "q1", "text": None}, {"_id": "q2", "text": "bread"}], ["no text", "'q1'"]),
    ("queries.jsonl", [{"_id": "q1", "text": "   "}, {"_id": "q2", "text": "bread"}], ["no text", "'q1'"]),
    ("qrels/test.tsv", ["query-id\tcorpus-id\tscore", "q1\td1\tinf"], ["test.tsv:2", "whole number"]),
    ("qrels/test.tsv", ["query-id\tcorpus-id\tscore", "q1\td1\tnan"], ["test.tsv:2", "whole number"]),
    ("qrels/test.tsv", ["query-id\tcorpus-id\tscore", "q1\td1\t1.5"], ["test.tsv:2", "whole number"]),
    ("qrels/test.tsv", ["query-id\tcorpus-id\tscore", "q1\td1"], ["test.tsv:2", "query-id<TAB>corpus-id<TAB>score"]),
])
def test_malformed_beir_rows_are_one_line(tmp_path, file, content, words):
    beir = write_beir_folder(tmp_path / "eval", [("q1", "d1", 1), ("q2", "d2", 1)])
    _rows(beir / file, content)
    line = user_error(["evaluate", "bm25", "--eval-data", str(beir)])
    assert all(word in line for word in words), line


def test_qrels_that_are_not_utf8_are_one_line(tmp_path):
    beir = write_beir_folder(tmp_path / "eval", [("q1", "d1", 1)])
    (beir / "qrels" / "test.tsv").write_bytes(b"query-id\tcorpus-id\tscore\nq1\td1\t1\nq\xe9\td1\t1\n")
    line = user_error(["evaluate", "bm25", "--eval-data", str(beir)])
    assert "test.tsv:3" in line and "UTF-8" in line and "0xe9" in line


@pytest.mark.parametrize("relevant, words", [
    ({"q1": {"d1": "1"}}, ["relevant_docs['q1']['d1']", "whole number"]),
    ({"q1": {"d1": None}}, ["relevant_docs['q1']['d1']", "whole number"]),
    ({"q1": {"d1": float("inf")}}, ["relevant_docs['q1']['d1']", "whole number"]),
    ({"q1": {"d1": True}}, ["whole number"]),
    ({"q1": "d1"}, ["relevant_docs['q1']", "list of document ids", "str"]),  # never read as the letters 'd', '1'
    ({"q1": 3}, ["relevant_docs['q1']", "list of document ids"]),
    ({"q1": [{"id": "d1"}]}, ["relevant_docs['q1']", "string or integer"]),
])
def test_bad_grades_and_relevant_docs_in_json_are_one_line(tmp_path, relevant, words):
    path = tmp_path / "eval.json"
    path.write_text(json.dumps({"queries": QUERIES, "corpus": DOCS, "relevant_docs": relevant}))
    line = user_error(["evaluate", "bm25", "--eval-data", str(path)])
    assert all(word in line for word in words), line


def test_repeated_keys_in_a_json_eval_file_keep_the_first(tmp_path):
    path = tmp_path / "eval.json"
    path.write_text('{"queries": {"q1": "cat tree", "q1": "bread oven"}, "corpus": {"d1": "the cat sat on the tree",'
                    ' "d2": "bread dough and yeast in the oven"}, "relevant_docs": {"q1": ["d1"]}}')
    data = load_eval_data(path, "ignored")
    assert data.query_texts == ["cat tree"] and data.dropped == {"json_duplicate_keys": 1}


def test_a_missing_split_names_the_flag_of_the_command_that_was_run(beir, tmp_path, triples_file):
    assert "choose --split" in user_error(["evaluate", "bm25", "--eval-data", str(beir), "--split", "dev"])
    line = user_error(["train", "--train-data", str(triples_file), "--eval-data", str(beir), "--eval-split", "dev",
                        "--output-dir", str(tmp_path / "run")])
    assert "choose --eval-split" in line and "available: test" in line


def test_a_first_line_with_inf_or_nan_is_a_bad_grade_not_a_header(tmp_path):
    for score in ("inf", "nan", "-inf"):
        beir = write_beir_folder(tmp_path / score, [])
        (beir / "qrels" / "test.tsv").write_text(f"q1\td1\t{score}\nq2\td2\t1\n")
        assert f"test.tsv:1: grade '{score}' is not a whole number" in user_error(["evaluate", "bm25", "--eval-data", str(beir)])
    beir = write_beir_folder(tmp_path / "header", [])
    (beir / "qrels" / "test.tsv").write_text("qid\tdocid\trelevance\nq1\td1\t1\n")  # a header of other words
    assert load_eval_data(beir, "test").qrels == {"q1": {"d1": 1}}
