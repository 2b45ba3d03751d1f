"""What every prepare-data source hands over: held-out query ids and judgements, and the files written."""

from __future__ import annotations

import json

from ragtrain.data.prepared import Prepared, held_out_queries, write_prepared


def test_held_out_queries_are_numbered_per_split_and_judge_each_relevant_id_once():
    queries, qrels = held_out_queries({"val": [("cat?", ["d1"]), ("dog?", ["d2", "d3"])], "test": [("sun?", ["d9"])],
                                       "train": [("never an eval query", ["d0"])]})
    assert queries == [{"_id": "val-0", "text": "cat?"}, {"_id": "val-1", "text": "dog?"}, {"_id": "test-0", "text": "sun?"}]
    assert qrels == {"val": [("val-0", "d1", 1), ("val-1", "d2", 1), ("val-1", "d3", 1)], "test": [("test-0", "d9", 1)]}


def test_written_files_are_triples_and_a_beir_folder(tmp_path):
    triple = {"query": "q", "positive": "p", "negatives": ["n"]}
    prepared = Prepared([triple], [], [{"_id": "d1", "title": "", "text": "p"}], [{"_id": "test-0", "text": "q"}],
                        {"val": [], "test": [("test-0", "d1", 1)]})
    write_prepared(tmp_path, prepared)
    assert [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()] == [triple]
    assert (tmp_path / "val.jsonl").read_text() == ""
    assert sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "eval").rglob("*") if p.is_file()) == [
        "eval/corpus.jsonl", "eval/qrels/test.tsv", "eval/queries.jsonl"]
