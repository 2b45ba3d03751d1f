"""Retrieval metrics from rankings and graded relevance judgements, no torch.

Definitions are those of trec_eval / BEIR (pytrec_eval) and ranx, which the tests use as the reference:
a ranking is document ids, best first; qrels are {doc_id: grade}; a grade > 0 is relevant; R is the number
of relevant documents of the query; k is the requested cut-off, even when fewer than k documents exist.

    recall@k    = relevant in top k / R
    precision@k = relevant in top k / k            (divides by k even if the ranking is shorter)
    ndcg@k      = DCG@k / IDCG@k, DCG = sum grade / log2(rank + 1)   (linear gain, Jarvelin & Kekalainen)
    mrr@k       = 1 / rank of the first relevant document in the top k, else 0
    map@k       = sum of precision@rank at each relevant rank <= k / R   (trec_eval map_cut)
    hit_rate@k  = 1 if any relevant document is in the top k, else 0

Queries with no relevant document are left out of every mean (and counted by the caller).
"""

from __future__ import annotations

import math

METRICS = ("recall", "precision", "ndcg", "mrr", "map", "hit_rate")


def query_metrics(ranking: list[str], qrels: dict[str, int], k: int) -> dict[str, float]:
    """Every metric at cut-off k for one query with at least one relevant document."""
    relevant = {doc for doc, grade in qrels.items() if grade > 0}
    hits = [doc in relevant for doc in ranking[:k]]
    hit_ranks = [rank for rank, hit in enumerate(hits, start=1) if hit]
    # precision at the n-th hit, which sits at rank r, is n / r
    precisions_at_hits = [n / rank for n, rank in enumerate(hit_ranks, start=1)]
    return {
        "recall": len(hit_ranks) / len(relevant),
        "precision": len(hit_ranks) / k,
        "ndcg": ndcg(ranking, qrels, k),
        "mrr": 1.0 / hit_ranks[0] if hit_ranks else 0.0,
        "map": sum(precisions_at_hits) / len(relevant),
        "hit_rate": 1.0 if hit_ranks else 0.0,
    }


def ndcg(ranking: list[str], qrels: dict[str, int], k: int) -> float:
    """nDCG@k with linear gains; grades <= 0 gain nothing."""
    dcg = sum(max(qrels.get(doc, 0), 0) / math.log2(rank + 1) for rank, doc in enumerate(ranking[:k], start=1))
    ideal = sorted((g for g in qrels.values() if g > 0), reverse=True)[:k]
    idcg = sum(grade / math.log2(rank + 1) for rank, grade in enumerate(ideal, start=1))
    return dcg / idcg if idcg > 0 else 0.0


def judged_queries(qrels: dict[str, dict[str, int]]) -> list[str]:
    """Query ids with at least one relevant document, the only ones metrics are averaged over."""
    return [q for q, judged in qrels.items() if any(grade > 0 for grade in judged.values())]


def per_query_metrics(rankings: dict[str, list[str]], qrels: dict[str, dict[str, int]],
                      k_values: tuple[int, ...]) -> dict[str, dict[str, float]]:
    """{query_id: {"ndcg@10": ..., ...}} for every judged query; a query absent from `rankings` scores 0."""
    scores = {}
    for query_id in judged_queries(qrels):
        row = {}
        for k in k_values:
            for name, value in query_metrics(rankings.get(query_id, []), qrels[query_id], k).items():
                row[f"{name}@{k}"] = value
        scores[query_id] = row
    return scores


def average(per_query: dict[str, dict[str, float]], k_values: tuple[int, ...]) -> dict[str, float]:
    """Mean of each metric@k over the queries given; 0 for every metric when there are none."""
    keys = [f"{m}@{k}" for m in METRICS for k in k_values]
    if not per_query:
        return dict.fromkeys(keys, 0.0)
    return {key: math.fsum(row[key] for row in per_query.values()) / len(per_query) for key in keys}


def mean_metrics(rankings: dict[str, list[str]], qrels: dict[str, dict[str, int]],
                 k_values: tuple[int, ...]) -> dict[str, float]:
    """Mean of each metric@k over the queries that have a relevant document: {"ndcg@10": ...}."""
    return average(per_query_metrics(rankings, qrels, k_values), k_values)
