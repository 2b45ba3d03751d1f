"""Reports: the side-by-side table with each model's change against the first, TREC run lines, run-file names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console

from ragtrain.reporting.evaltable import display_name, headline_k, results_table, run_file_paths, run_tag, trec_run_text


def rendered(table) -> str:
    console = Console(width=200, record=True, file=open("/dev/null", "w"))
    console.print(table)
    return console.export_text()


def result(ndcg: float, precision: str | None = None) -> dict:
    metrics = {"ndcg@10": ndcg, "mrr@10": ndcg / 2, "recall@1": 0.25, "recall@10": 0.75}
    return {"metrics": metrics, "timings": {"total_s": 1.25}} | ({"precision": precision} if precision else {})


def test_the_table_shows_each_later_model_against_the_first():
    results = {"queries": 3, "corpus": 5, "data": {"excluded_queries": 1},
               "models": {"bm25": result(0.5), "runs/a/final": result(0.625, "fp32")}}
    text = rendered(results_table(results, (1, 10)))
    assert results_table(results, (1, 10)).title == "Retrieval on 3 queries, 5 documents, 1 without relevant documents left out"
    assert "0.5000" in text and "0.6250" in text and "+0.1250" in text  # nDCG@10 and its change
    assert "+0.0625" in text  # MRR@10: 0.3125 against 0.25
    assert "dense models encoded in fp32 (--precision)" in text


def test_the_headline_cut_off_is_10_when_asked_else_the_largest():
    assert headline_k((1, 10, 100)) == 10 and headline_k((1, 5)) == 5


def test_names_and_tags_are_short_and_safe():
    assert display_name("sentence-transformers/all-MiniLM-L6-v2") == "all-MiniLM-L6-v2"  # a hub name, no such path
    assert run_tag("checkpoints/run 1/") == "run_1" and run_tag("bm25") == "bm25"
    # the hybrid row beside its model's own row: told apart in the table and in the run files
    assert display_name("hybrid:sentence-transformers/all-MiniLM-L6-v2") == "hybrid:all-MiniLM-L6-v2"
    assert run_tag("hybrid:sentence-transformers/all-MiniLM-L6-v2") == "hybrid_all-MiniLM-L6-v2"
    models = ("sentence-transformers/all-MiniLM-L6-v2", "hybrid:sentence-transformers/all-MiniLM-L6-v2")
    assert run_file_paths(Path("run.trec"), models) == [Path("run.all-MiniLM-L6-v2.trec"),
                                                         Path("run.hybrid_all-MiniLM-L6-v2.trec")]


def test_run_lines_are_trec_format_ranked_from_1():
    text = trec_run_text(["q1"], ["d0", "d1", "d2"], np.array([[2, 0]]), np.array([[0.75, 0.5]]), "tag")
    assert text == "q1 Q0 d2 1 0.750000 tag\nq1 Q0 d0 2 0.500000 tag\n"


def test_several_models_get_one_run_file_each_even_with_the_same_last_name():
    assert run_file_paths(Path("out/run.trec"), ("bm25",)) == [Path("out/run.trec")]
    assert run_file_paths(Path("run.trec"), ("bm25", "m/final")) == [Path("run.bm25.trec"), Path("run.final.trec")]
    assert run_file_paths(Path("run.trec"), ("a/final", "b/final")) == [Path("run.1-final.trec"), Path("run.2-final.trec")]
