"""The synthetic corpus of the large-corpus benchmarks: distinct passages, judgements true by construction (every
passage judged relevant holds both sentences its query opens with), reused once made, and read by evaluate."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from ragtrain.commands.evaluate import evaluate
from tests.conftest import SHARED_DATA, evaluate_config, quiet_console

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_corpus.py"
sys.path.insert(0, str(SCRIPT.parent))  # as when it runs: its own folder first, for benchlib
spec = importlib.util.spec_from_file_location("make_corpus", SCRIPT)
make_corpus = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_corpus)

pytestmark = pytest.mark.skipif(not (SHARED_DATA / "scifact").is_dir(), reason="shared SciFact data absent")


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_passages_are_distinct_and_every_judgement_holds_by_construction(tmp_path):
    folder = make_corpus.make_corpus(300, tmp_path / "corpus", queries=40, seed=3)
    docs, corpus = rows(folder / "docs.jsonl"), rows(folder / "beir" / "corpus.jsonl")
    assert len(docs) == len({d["text"] for d in docs}) == len(corpus) == 300
    assert [d["text"] for d in docs] == [c["text"] for c in corpus]
    pool = make_corpus.sentence_pool(make_corpus.SCIFACT / "corpus.jsonl")
    queries = {q["_id"]: q["text"] for q in rows(folder / "beir" / "queries.jsonl")}
    judged: dict[str, set[str]] = {}
    for line in (folder / "beir" / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        query, doc, grade = line.split("\t")
        judged.setdefault(query, set()).add(doc)
    assert len(queries) == len(judged) == 40
    text = {c["_id"]: c["text"] for c in corpus}
    for query, relevant in judged.items():
        halves = [s for s in pool if " ".join(s.split()[: make_corpus.QUERY_WORDS_PER_SENTENCE]) in queries[query]]
        holders = {doc for doc, body in text.items() if sum(s in body for s in halves) >= 2}
        assert relevant <= holders  # each judged passage holds two sentences the query opens with
    assert make_corpus.make_corpus(300, tmp_path / "corpus", queries=40, seed=3) == folder  # made once, then reused


def test_the_evaluation_set_is_what_evaluate_reads(tmp_path):
    folder = make_corpus.make_corpus(200, tmp_path / "corpus", queries=20)
    results = evaluate(evaluate_config(folder / "beir", tmp_path, "bm25"), console=quiet_console())
    assert results["queries"] == 20 and results["models"]["bm25"]["metrics"]["recall@10"] > 0.8  # words of its own
