"""Retrieval metrics from rankings and graded relevance judgements (trec_eval definitions), no torch.

ranking: document ids, best first. qrels: {doc_id: grade}; a grade > 0 is relevant; gains are linear.
"""

from __future__ import annotations

import math

METRICS = ("recall", "precision", "ndcg", "mrr", "map", "hit_rate")


def query_metrics(ranking: list[str], qrels: dict[str, int], k: int) -> dict[str, float]:
    """Every metric at cut-off k for one query with at least one relevant document."""
    relevant = {doc for doc, grade in qrels.items() if grade > 0}
    top = ranking[:k]
    hits = [doc in relevant for doc in top]
    first_hit = next((rank for rank, hit in enumerate(hits, start=1) if hit), None)
    precisions_at_hits = [sum(hits[:rank]) / rank for rank, hit in enumerate(hits, start=1) if hit]
    return {
        "recall": sum(hits) / len(relevant),
        "precision": sum(hits) / k,
        "ndcg": ndcg(top, qrels, k),
        "mrr": 1.0 / first_hit if first_hit else 0.0,
        "map": sum(precisions_at_hits) / len(relevant),
        "hit_rate": 1.0 if first_hit else 0.0,
    }


def ndcg(top: list[str], qrels: dict[str, int], k: int) -> float:
    dcg = sum(max(qrels.get(doc, 0), 0) / math.log2(rank + 1) for rank, doc in enumerate(top[:k], start=1))
    ideal = sorted((g for g in qrels.values() if g > 0), reverse=True)[:k]
    idcg = sum(grade / math.log2(rank + 1) for rank, grade in enumerate(ideal, start=1))
    return dcg / idcg if idcg > 0 else 0.0


def mean_metrics(rankings: dict[str, list[str]], qrels: dict[str, dict[str, int]], k_values: tuple[int, ...]) -> dict[str, float]:
    """Mean of each metric@k over the queries that have a relevant document: {"ndcg@10": ...}."""
    judged = [q for q in qrels if any(g > 0 for g in qrels[q].values())]
    totals = {f"{m}@{k}": 0.0 for m in METRICS for k in k_values}
    for query_id in judged:
        for k in k_values:
            for name, value in query_metrics(rankings.get(query_id, []), qrels[query_id], k).items():
                totals[f"{name}@{k}"] += value
    return {key: value / len(judged) if judged else 0.0 for key, value in totals.items()}
