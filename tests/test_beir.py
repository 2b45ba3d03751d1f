"""The BEIR layout: what write_beir writes read_beir reads back; repeats kept first and counted; bad rows named."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from ragtrain.data.beir import QRELS_HEADER, document_text, read_beir, read_qrels, whole_grade, write_beir
from ragtrain.errors import UserError

CORPUS = [{"_id": "d1", "title": "Cats", "text": "the cat sat"}, {"_id": "d2", "title": "", "text": "bread rises"}]
QUERIES = [{"_id": "val-0", "text": "where do cats sit"}, {"_id": "test-0", "text": "why does bread rise"}]
QRELS = {"val": [("val-0", "d1", 1)], "test": [("test-0", "d2", 2), ("test-0", "d1", 0)], "dev": []}


def test_what_is_written_reads_back_and_an_empty_split_gets_no_file(tmp_path):
    write_beir(tmp_path, CORPUS, QUERIES, QRELS)
    assert not (tmp_path / "qrels" / "dev.tsv").exists()
    assert (tmp_path / "qrels" / "test.tsv").read_text() == f"{QRELS_HEADER}\ntest-0\td2\t2\ntest-0\td1\t0\n"
    counts: Counter = Counter()
    corpus, queries, qrels = read_beir(tmp_path, ["val", "test"], counts)
    assert corpus == {"d1": {"title": "Cats", "text": "the cat sat"}, "d2": {"title": "", "text": "bread rises"}}
    assert queries == {"val-0": "where do cats sit", "test-0": "why does bread rise"}
    assert qrels == {"val": {"val-0": {"d1": 1}}, "test": {"test-0": {"d2": 2, "d1": 0}}}
    assert not counts


def test_a_document_is_its_title_and_text_joined_by_a_space_as_in_beir():
    assert [document_text(doc) for doc in CORPUS] == ["Cats the cat sat", "bread rises"]


def test_repeated_ids_and_judgements_keep_the_first_and_are_counted(tmp_path):
    write_beir(tmp_path, [*CORPUS, {"_id": "d1", "title": "", "text": "a second d1"}],
               [*QUERIES, {"_id": "val-0", "text": "again"}], {"val": [("val-0", "d1", 1), ("val-0", "d1", 0)]})
    counts: Counter = Counter()
    corpus, queries, qrels = read_beir(tmp_path, ["val"], counts)
    assert corpus["d1"]["text"] == "the cat sat" and queries["val-0"] == "where do cats sit"
    assert qrels["val"] == {"val-0": {"d1": 1}}
    assert counts == {"corpus_duplicate_ids": 1, "queries_duplicate_ids": 1, "qrels_duplicate_judgements": 1}


@pytest.mark.parametrize("first, kept", [("query-id\tcorpus-id\tscore", {}), ("qid\tdocid\trelevance", {}),
                                         ("q0\td0\t1", {"q0": {"d0": 1}})])
def test_a_first_line_is_a_header_only_when_a_word_stands_where_the_score_belongs(tmp_path, first, kept):
    (tmp_path / "test.tsv").write_text(f"{first}\nq1\td1\t1\n")
    assert read_qrels(tmp_path / "test.tsv") == {**kept, "q1": {"d1": 1}}


@pytest.mark.parametrize("file, content, words", [
    ("corpus.jsonl", '{"title": "", "text": "no id"}', ["corpus.jsonl:1", "'_id'"]),
    ("corpus.jsonl", '{"_id": ["d1"], "text": "a list as id"}', ["corpus.jsonl:1", "'_id'"]),
    ("corpus.jsonl", '{"_id": "d1", "text": ["not", "text"]}', ["corpus.jsonl:1", "'text' must be a string"]),
    ("queries.jsonl", '{"_id": "q1", "text": "cat"}\n{"text": "no id"}', ["queries.jsonl:2", "'_id'"]),
    ("qrels/test.tsv", "q1\td1\t2.5", ["test.tsv:1", "grade '2.5' is not a whole number"]),
    ("qrels/test.tsv", "q1\t0\td1\t1", ["test.tsv:1", "looks like TREC qrels"]),
])
def test_a_malformed_row_is_a_user_error_naming_file_and_line(tmp_path, file, content, words):
    write_beir(tmp_path, CORPUS, QUERIES, {"test": [("test-0", "d2", 1)]})
    (tmp_path / file).write_text(content + "\n")
    with pytest.raises(UserError) as error:
        read_beir(tmp_path, ["test"], Counter())
    assert all(word in str(error.value) for word in words), error.value


def test_a_grade_must_be_a_whole_finite_number():
    assert whole_grade(2.0, "here") == 2 and whole_grade(-1, "here") == -1
    for bad in ("1", None, True, float("inf"), float("nan"), 1.5):
        with pytest.raises(UserError, match="is not a whole number"):
            whole_grade(bad, "here")


def test_rows_are_json_objects_one_per_line(tmp_path):
    write_beir(tmp_path, CORPUS, QUERIES, {})
    assert [json.loads(line) for line in (tmp_path / "corpus.jsonl").read_text().splitlines()] == CORPUS
