"""Metrics against hand-computed values and against ranx (the reference) on random graded runs."""

from __future__ import annotations

import math
import random

import pytest

from ragtrain.retrieval.metrics import METRICS, judged_queries, mean_metrics, per_query_metrics, query_metrics

RANX_NAMES = {"recall": "recall", "precision": "precision", "ndcg": "ndcg", "mrr": "mrr", "map": "map",
              "hit_rate": "hit_rate"}


def test_hand_computed_binary_case():
    # relevant: a, c, e (R = 3); ranking a x c y z -> hits at ranks 1 and 3
    m = query_metrics(["a", "x", "c", "y", "z"], {"a": 1, "c": 1, "e": 1}, k=5)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["precision"] == pytest.approx(2 / 5)
    assert m["mrr"] == pytest.approx(1.0)
    assert m["map"] == pytest.approx((1 / 1 + 2 / 3) / 3)
    assert m["hit_rate"] == 1.0
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    idcg = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["ndcg"] == pytest.approx(dcg / idcg)


def test_hand_computed_graded_case():
    # grades b=3, a=1, d=0 (judged non-relevant); ranking a, b at k=2
    m = query_metrics(["a", "b", "d"], {"a": 1, "b": 3, "d": 0}, k=2)
    dcg = 1 / math.log2(2) + 3 / math.log2(3)
    idcg = 3 / math.log2(2) + 1 / math.log2(3)
    assert m["ndcg"] == pytest.approx(dcg / idcg)
    assert m["recall"] == 1.0 and m["precision"] == 1.0 and m["map"] == 1.0


def test_first_hit_below_cutoff_scores_zero():
    m = query_metrics(["x", "y", "a"], {"a": 1}, k=2)
    assert m == {name: 0.0 for name in METRICS}


def test_k_larger_than_ranking_divides_precision_by_k():
    m = query_metrics(["a", "x"], {"a": 2, "b": 1}, k=10)
    assert m["precision"] == pytest.approx(1 / 10)
    assert m["recall"] == pytest.approx(1 / 2)
    assert m["mrr"] == 1.0
    assert m["map"] == pytest.approx(1 / 2)
    assert m["ndcg"] == pytest.approx(2 / (2 + 1 / math.log2(3)))


def test_results_are_keyed_by_requested_k():
    means = mean_metrics({"q": ["a", "b"]}, {"q": {"b": 1}}, (1, 1000))
    assert set(means) == {f"{m}@{k}" for m in METRICS for k in (1, 1000)}
    assert means["recall@1000"] == 1.0 and means["mrr@1000"] == 0.5 and means["recall@1"] == 0.0


def test_queries_without_relevant_documents_are_left_out():
    qrels = {"q1": {"a": 1}, "q2": {"b": 0}, "q3": {}}
    assert judged_queries(qrels) == ["q1"]
    assert set(per_query_metrics({"q1": ["a"], "q2": ["b"]}, qrels, (1,))) == {"q1"}
    assert mean_metrics({"q1": ["a"], "q2": ["b"]}, qrels, (1,))["recall@1"] == 1.0


def test_missing_ranking_scores_zero():
    means = mean_metrics({"q1": ["a"]}, {"q1": {"a": 1}, "q2": {"b": 1}}, (1,))
    assert means["recall@1"] == 0.5


def random_case(seed: int, num_queries: int = 40, corpus: int = 60):
    rng = random.Random(seed)
    docs = [f"d{i}" for i in range(corpus)]
    qrels, rankings = {}, {}
    for q in range(num_queries):
        judged = rng.sample(docs, rng.randint(1, 12))
        qrels[f"q{q}"] = {d: rng.choice([0, 1, 1, 2, 3]) for d in judged}
        rankings[f"q{q}"] = rng.sample(docs, rng.randint(1, corpus))
    return rankings, qrels


@pytest.mark.parametrize("seed", range(5))
def test_every_metric_equals_ranx(seed):
    ranx = pytest.importorskip("ranx")
    rankings, qrels = random_case(seed)
    judged = judged_queries(qrels)
    ranx_qrels = ranx.Qrels({q: {d: g for d, g in qrels[q].items()} for q in judged})
    ranx_run = ranx.Run({q: {d: float(len(r) - i) for i, d in enumerate(r)} for q, r in rankings.items() if q in judged})
    k_values = (1, 3, 5, 10, 100)
    ours = per_query_metrics(rankings, qrels, k_values)
    names = [f"{RANX_NAMES[m]}@{k}" for m in METRICS for k in k_values]
    theirs = ranx.evaluate(ranx_qrels, ranx_run, names, return_mean=False, make_comparable=True)
    for m in METRICS:
        for k in k_values:
            reference = theirs[f"{RANX_NAMES[m]}@{k}"]
            for position, query_id in enumerate(ranx_qrels.keys()):
                assert ours[query_id][f"{m}@{k}"] == pytest.approx(float(reference[position]), abs=1e-6), (m, k, query_id)
    means = mean_metrics(rankings, qrels, k_values)
    reference_means = ranx.evaluate(ranx_qrels, ranx_run, names, make_comparable=True)
    for m in METRICS:
        for k in k_values:
            assert means[f"{m}@{k}"] == pytest.approx(reference_means[f"{RANX_NAMES[m]}@{k}"], abs=1e-6)
