"""Hard-negative mining with BM25 (bm25s), with filters against false negatives."""

from __future__ import annotations

import random

import bm25s
import numpy as np

from ragtrain.documents import Passage


def build_bm25(texts: list[str]) -> bm25s.BM25:
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
    return retriever


def bm25_search(retriever: bm25s.BM25, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k passage indices and scores per query: (num_queries, k) each."""
    k = min(k, int(retriever.scores["num_docs"]))
    tokens = bm25s.tokenize(queries, stopwords="en", show_progress=False)
    indices, scores = retriever.retrieve(tokens, k=k, show_progress=False, n_threads=1)
    return np.asarray(indices), np.asarray(scores)


def mine_bm25_negatives(
    queries: list[str],
    positive_indices: list[int],
    passages: list[Passage],
    num_negatives: int,
    rank_window: tuple[int, int],
    seed: int,
    retriever: bm25s.BM25 | None = None,
) -> list[list[int]]:
    """For each query, up to `num_negatives` passage indices drawn from BM25 ranks [start, end).

    Never the positive and never a passage of the positive's own document (likely relevant too).
    """
    if num_negatives == 0 or not queries:
        return [[] for _ in queries]
    retriever = retriever or build_bm25([p.text for p in passages])
    start, end = rank_window
    ranked, _ = bm25_search(retriever, queries, end)
    rng = random.Random(seed)
    negatives = []
    for row, positive in zip(ranked, positive_indices):
        own_doc = passages[positive].doc_id
        candidates = [int(i) for i in row[start:end] if int(i) != positive and passages[int(i)].doc_id != own_doc]
        negatives.append(sorted(rng.sample(candidates, min(num_negatives, len(candidates))), key=candidates.index))
    return negatives
