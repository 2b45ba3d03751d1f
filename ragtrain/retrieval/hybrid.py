"""BM25 and a dense model fused into one score: evaluate's hybrid:MODEL rows and prepare-data's hybrid teacher.

Each query's BM25 scores and cosine (or dot) scores over the whole corpus are standardised on their own (z-scores:
minus that query's mean over the corpus, divided by its standard deviation), so two scales that share nothing
become comparable, then mixed as `weight * bm25_z + (1 - weight) * dense_z`. On SciFact dev, weight 0.2 with
all-MiniLM-L6-v2 gave 0.7419 nDCG@10 against 0.6804 for the model alone (README Results).
"""

from __future__ import annotations

import numpy as np

from ragtrain.retrieval.bm25 import bm25_scores, build_bm25
from ragtrain.retrieval.metrics import per_query_metrics
from ragtrain.retrieval.search import top_k

HYBRID_PREFIX = "hybrid:"  # evaluate's hybrid:MODEL row, labelled so it is not mistaken for MODEL's own row
QUERY_CHUNK = 256  # queries fused at once: (256, corpus) float32 matrices
TUNE_WEIGHTS = tuple(round(0.05 * n, 2) for n in range(21))  # 0, 0.05, ..., 1
STD_FLOOR = 1e-12  # a query that scores every document alike (no indexed word): all its z-scores are 0


def zscores(scores: np.ndarray) -> np.ndarray:
    """(Q, C) -> (Q, C): each row minus its mean, over its standard deviation (a constant row becomes zeros)."""
    scores = scores.astype(np.float64)
    centred = scores - scores.mean(axis=1, keepdims=True)
    std = scores.std(axis=1, keepdims=True)
    return (centred / np.where(std > STD_FLOOR, std, 1.0)).astype(np.float32)


def fuse(bm25: np.ndarray, dense: np.ndarray, weight: float) -> np.ndarray:
    """(Q, C) BM25 and (Q, C) dense scores -> (Q, C) fused: weight * z(bm25) + (1 - weight) * z(dense)."""
    return weight * zscores(bm25) + (1 - weight) * zscores(dense)


def bm25_matrix(index, queries: list[str], corpus_size: int) -> np.ndarray:
    """(Q, C) BM25 score of every text for each query (zeros for a query with no indexed word)."""
    out = np.zeros((len(queries), corpus_size), dtype=np.float32)
    if index is None:
        return out
    for row, scores in enumerate(bm25_scores(index, queries)):
        if scores is not None:
            out[row] = scores
    return out


class HybridScorer:
    """A corpus indexed for BM25 plus its (C, D) embeddings: fused score rows for queries given their embeddings."""

    def __init__(self, corpus_texts: list[str], corpus_emb: np.ndarray):
        self.index = build_bm25(corpus_texts)
        self.corpus_emb = np.asarray(corpus_emb, dtype=np.float32)  # (C, D)

    def scores(self, queries: list[str], query_emb: np.ndarray, weight: float) -> np.ndarray:
        """(Q, C) fused scores of every corpus text for each query (query_emb: (Q, D))."""
        bm25 = bm25_matrix(self.index, queries, len(self.corpus_emb))
        return fuse(bm25, np.asarray(query_emb, dtype=np.float32) @ self.corpus_emb.T, weight)

    def search(self, queries: list[str], query_emb: np.ndarray, weight: float,
               depth: int) -> tuple[np.ndarray, np.ndarray]:
        """Each query's top `depth` by fused score, QUERY_CHUNK queries at a time: (indices, scores)."""
        parts = [top_k(self.scores(queries[s : s + QUERY_CHUNK], query_emb[s : s + QUERY_CHUNK], weight), depth)
                 for s in range(0, len(queries), QUERY_CHUNK)]
        if not parts:
            depth = min(depth, len(self.corpus_emb))
            return np.zeros((0, depth), dtype=np.int64), np.zeros((0, depth), dtype=np.float32)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def tune_weight(scorer: HybridScorer, queries: list[str], query_emb: np.ndarray, query_ids: list[str],
                qrels: dict[str, dict[str, int]], corpus_ids: list[str]) -> tuple[float, dict[float, float]]:
    """The weight of TUNE_WEIGHTS with the best mean nDCG@10 on these (tuning) queries, and each weight's mean;
    equal means keep the lowest weight."""
    totals = dict.fromkeys(TUNE_WEIGHTS, 0.0)
    for start in range(0, len(queries), QUERY_CHUNK):
        chunk = slice(start, start + QUERY_CHUNK)
        bm25_z = zscores(bm25_matrix(scorer.index, queries[chunk], len(corpus_ids)))  # (q, C)
        dense_z = zscores(np.asarray(query_emb[chunk], dtype=np.float32) @ scorer.corpus_emb.T)  # (q, C)
        ids = query_ids[chunk]
        for weight in TUNE_WEIGHTS:
            indices, _ = top_k(weight * bm25_z + (1 - weight) * dense_z, 10)
            rankings = {q: [corpus_ids[i] for i in row] for q, row in zip(ids, indices)}
            per_query = per_query_metrics(rankings, {q: qrels[q] for q in ids}, (10,))
            totals[weight] += sum(row["ndcg@10"] for row in per_query.values())
    means = {w: total / max(len(queries), 1) for w, total in totals.items()}
    return max(TUNE_WEIGHTS, key=lambda w: (means[w], -w)), means
