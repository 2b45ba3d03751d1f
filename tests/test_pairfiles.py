"""Pairs where users keep them: JSONL, a JSON list, CSV/TSV, Parquet and a saved Hugging Face dataset, with the
column names of sentence-transformers and FlagEmbedding recognised, any other named by --query-field,
--positive-field and --negative-field, and one line saying which were used."""

from __future__ import annotations

import json

import pytest

from ragtrain.data.pairfiles import PairFields, read_pairs
from ragtrain.errors import UserError
from tests.conftest import jsonl_rows, user_error

ROWS = [{"anchor": "how warm should sourdough proof", "positive": "Sourdough proofs best at 24-26 C.",
         "negative": "Compost heats up to 60 C."},
        {"anchor": "when to prune roses", "positive": "Prune roses in late winter.", "negative": ""}]
EXPECTED = [("how warm should sourdough proof", ["Sourdough proofs best at 24-26 C."], ["Compost heats up to 60 C."]),
            ("when to prune roses", ["Prune roses in late winter."], [])]


def write(path, rows):
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows))
    elif path.suffix in (".csv", ".tsv"):
        import csv

        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter="\t" if path.suffix == ".tsv" else ",")
            writer.writeheader()
            writer.writerows(rows)
    elif path.suffix == ".parquet":
        import pyarrow
        import pyarrow.parquet

        pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".tsv", ".parquet"])
def test_sentence_transformers_triplets_read_from_every_file_format(tmp_path, suffix):
    path = write(tmp_path / f"pairs{suffix}", ROWS)
    pairs, line = read_pairs(path)
    assert pairs == EXPECTED
    assert line == (f"--pairs {path}: 2 rows; query from 'anchor', positive from 'positive', negatives from "
                    "'negative' (--query-field, --positive-field and --negative-field choose others)")


def test_a_saved_hugging_face_dataset_uses_its_train_split(tmp_path):
    datasets = pytest.importorskip("datasets")
    both = datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS),
                                 "test": datasets.Dataset.from_list([ROWS[0]])})
    both.save_to_disk(str(tmp_path / "dict"))
    datasets.Dataset.from_list([ROWS[1]]).save_to_disk(str(tmp_path / "single"))
    pairs, line = read_pairs(tmp_path / "dict")
    assert pairs == EXPECTED
    assert line.startswith(f"--pairs {tmp_path / 'dict'}, its 'train' split (of train, test; prepare-data makes its "
                           "own held-out splits): 2 rows; query from 'anchor'")
    assert read_pairs(tmp_path / "single")[0] == EXPECTED[1:]


def test_question_answer_and_flagembedding_lists_and_numbered_hard_negatives(tmp_path):
    qa = write(tmp_path / "qa.csv", [{"question": "q1", "answer": "a1"}])
    assert read_pairs(qa)[0] == [("q1", ["a1"], [])]
    flag = write(tmp_path / "flag.jsonl", [{"query": "q", "pos": ["p1", "p2"], "neg": ["n1", " ", "n2"]}])
    assert read_pairs(flag)[0] == [("q", ["p1", "p2"], ["n1", "n2"])]
    mined = {"query": "q", "positive": "p", **{f"negative_{n}": f"n{n}" for n in (1, 2, 10, 3)}}
    pairs, line = read_pairs(write(tmp_path / "mined.parquet", [mined]))
    assert pairs == [("q", ["p"], ["n1", "n2", "n3", "n10"])]
    assert "negatives from 'negative_1' to 'negative_10' (4 columns)" in line


def test_other_columns_are_named_by_the_field_options(tmp_path):
    path = write(tmp_path / "mine.jsonl", [{"ask": "q", "doc": "p", "wrong": ["n"], "query": "not this one"}])
    pairs, line = read_pairs(path, PairFields("ask", "doc", "wrong"))
    assert pairs == [("q", ["p"], ["n"])]
    assert "query from 'ask', positive from 'doc', negatives from 'wrong'" in line


@pytest.mark.parametrize("rows, fields, words", [
    ([{"query": "q", "anchor": "a", "positive": "p"}], PairFields(), "has both 'query' and 'anchor', either of which "
     "could be the query; say which with --query-field"),
    ([{"text": "q", "positive": "p"}], PairFields(), "has no query column (query, anchor, question; it has 'text', "
     "'positive'); name it with --query-field"),
    ([{"query": "q", "positive": "p"}], PairFields(positive="passage"), "--positive-field 'passage' is not a column"),
    ([{"query": "q", "positive": "p", "negative": "n", "neg": ["m"]}], PairFields(), "has both 'negative' and 'neg'"),
    ([{"query": "q", "positive": "p"}, {"query": "r", "positive": ""}], PairFields(),
     "row 2 has no positive text in 'positive'"),
    ([{"query": ["q", "r"], "positive": "p"}], PairFields(), "row 1: 'query' must be one text, got 2"),
])
def test_a_pairs_file_prepare_data_cannot_read_is_one_line_naming_the_fix(tmp_path, rows, fields, words):
    with pytest.raises(UserError, match=words.replace("(", r"\(").replace(")", r"\)")):
        read_pairs(write(tmp_path / "pairs.jsonl", rows), fields)


def test_prepare_data_reads_parquet_pairs_with_the_field_options(tmp_path):
    from typer.testing import CliRunner

    from ragtrain.cli import app

    rows = [{"ask": f"question {n} about topic {n % 7}", "doc": f"passage {n} on topic {n % 7} and more {n}"}
            for n in range(40)]
    path = write(tmp_path / "pairs.parquet", rows)
    result = CliRunner().invoke(app, ["prepare-data", "--pairs", str(path), "-o", str(tmp_path / "out"),
                                      "--query-field", "ask", "--positive-field", "doc", "--negatives", "1",
                                      "--negative-range", "1-20"])
    assert result.exit_code == 0, result.output
    assert "query from 'ask', positive from 'doc', negatives from none" in result.output
    triples = jsonl_rows(tmp_path / "out" / "train.jsonl")
    assert triples and all(t["query"].startswith("question") and t["positive"].startswith("passage") for t in triples)


def test_a_missing_package_or_an_unknown_format_is_one_line_before_any_work(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else real(name, *a))
    parquet = write(tmp_path / "pairs.jsonl", ROWS).rename(tmp_path / "pairs.parquet")
    out = tmp_path / "out"
    assert user_error(["prepare-data", "--pairs", str(parquet), "-o", str(out)]) == \
        "error: reading a Parquet file needs pyarrow: pip install 'ragtrain[parquet]'"
    xlsx = write(tmp_path / "pairs.jsonl", ROWS).rename(tmp_path / "pairs.xlsx")
    assert "unknown format .xlsx; use .jsonl, .json, .csv, .tsv, .parquet or a saved Hugging Face dataset folder" in \
        user_error(["prepare-data", "--pairs", str(xlsx), "-o", str(out)])
    assert "names a column of --pairs; pass --pairs FILE or drop it" in \
        user_error(["prepare-data", str(tmp_path), "--query-field", "q", "-o", str(out)])
    assert not out.exists()
