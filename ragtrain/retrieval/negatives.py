"""Hard-negative mining with BM25 or a dense encoder, with filters against false negatives.

For each query a negative is drawn from a rank window of the retriever's list (the very top is skipped:
it is where unlabelled positives sit), never a passage judged relevant, never a passage of the query's own
document unless asked, and never a passage scoring at least `margin` times the positive's score.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from ragtrain.retrieval.bm25 import bm25_scores, build_bm25

if TYPE_CHECKING:  # torch loads only for the dense miner
    from ragtrain.retrieval.embedding import Embedder


@dataclass(frozen=True)
class MiningOptions:
    num_negatives: int = 4
    rank_range: tuple[int, int] = (10, 100)  # 1-based ranks, both ends included
    margin: float = 0.95  # drop candidates scoring >= margin * the positive's score
    same_document: bool = False
    seed: int = 42
    dense: Embedder | None = None  # the dense miner's model, loaded once; None: BM25 mines


@dataclass(frozen=True)
class Ranking:
    indices: np.ndarray  # (queries, depth) corpus indices, best first
    scores: np.ndarray  # (queries, depth)
    positive_scores: np.ndarray  # (queries,) best score among each query's positives


def bm25_search_with_positives(texts: list[str], queries: list[str], positives: list[tuple[int, ...]],
                               depth: int) -> Ranking:
    """Exact BM25 top-`depth` per query (equal scores by corpus index), and each query's score for its own positives."""
    index = build_bm25(texts)
    depth = min(depth, len(texts))
    indices = np.tile(np.arange(depth), (len(queries), 1))  # a query without an indexed word: every passage scores 0
    scores = np.zeros((len(queries), depth), dtype=np.float32)
    positive_scores = np.zeros(len(queries), dtype=np.float32)
    if index is None:
        return Ranking(indices, scores, positive_scores)
    rows = tqdm(zip(bm25_scores(index, queries), positives), total=len(queries), desc="mining (bm25)", unit="query",
                disable=None)
    for row, (all_scores, positive) in enumerate(rows):
        if all_scores is None:
            continue
        top = np.argpartition(-all_scores, depth - 1)[:depth]
        top = top[np.lexsort((top, -all_scores[top]))]  # by score, ties by index (which of the tied at the cut: numpy's)
        indices[row], scores[row] = top, all_scores[top]
        positive_scores[row] = all_scores[list(positive)].max()
    return Ranking(indices, scores, positive_scores)


def dense_search_with_positives(embedder: Embedder, texts: list[str], queries: list[str], positives: list[tuple[int, ...]],
                  depth: int) -> Ranking:
    """Exact top-`depth` by dot product of the model's embeddings (cosine for normalised models), queries and
    passages as the model reads them (its prompts and length), and each query's score of its own positives."""
    import torch  # late: a bm25-only run never loads torch

    from ragtrain.retrieval.embedding import DOCUMENTS, QUERIES
    from ragtrain.retrieval.search import QUERY_CHUNK, dense_search

    embedded = embedder.embed({"mining: passages": (DOCUMENTS, texts), "mining: queries": (QUERIES, queries)})
    corpus_emb = torch.from_numpy(np.array(embedded.parts["mining: passages"]))  # (C, D)
    query_emb = torch.from_numpy(np.array(embedded.parts["mining: queries"]))  # (Q, D)
    indices, _ = dense_search(query_emb, corpus_emb, min(depth, len(texts)))  # (Q, depth)
    scores = np.zeros(indices.shape, dtype=np.float32)
    for start in range(0, len(queries), QUERY_CHUNK):  # (QUERY_CHUNK, depth, D) candidates at a time
        chunk = slice(start, start + QUERY_CHUNK)
        scores[chunk] = torch.einsum("qd,qkd->qk", query_emb[chunk], corpus_emb[torch.from_numpy(indices[chunk])]).numpy()
    positive_scores = np.array([max(float(query_emb[q] @ corpus_emb[p]) for p in positive)
                                for q, positive in enumerate(positives)], dtype=np.float32)
    return Ranking(indices, scores, positive_scores)


def select_negatives(ranking: Ranking, positives: list[tuple[int, ...]], doc_ids: list[str],
                     options: MiningOptions, counts: Counter) -> list[list[int]]:
    """Up to `num_negatives` corpus indices per query from the rank window, after the filters; seeded."""
    rng = random.Random(options.seed)
    start, end = options.rank_range
    negatives = []
    for row, positive in enumerate(positives):
        own_docs = {doc_ids[p] for p in positive}
        threshold = options.margin * float(ranking.positive_scores[row])
        candidates = []
        for index, score in zip(ranking.indices[row, start - 1 : end].tolist(), ranking.scores[row, start - 1 : end].tolist()):
            if index in positive:
                continue
            if not options.same_document and doc_ids[index] in own_docs:
                counts["negatives_skipped_same_document"] += 1
            elif score >= threshold:
                counts["negatives_skipped_false_negative"] += 1
            else:
                candidates.append(index)
        chosen = sorted(rng.sample(range(len(candidates)), min(options.num_negatives, len(candidates))))
        negatives.append([candidates[c] for c in chosen])
        counts["triples_short_of_negatives"] += len(chosen) < options.num_negatives
    return negatives


def mine_negatives(texts: list[str], doc_ids: list[str], queries: list[str], positives: list[tuple[int, ...]],
                   options: MiningOptions, counts: Counter) -> list[list[int]]:
    """Negatives (corpus indices) for each query; `positives` are the corpus indices judged relevant to it."""
    if options.num_negatives == 0 or not queries or not texts:
        return [[] for _ in queries]
    depth = options.rank_range[1]
    if options.dense is not None:
        ranking = dense_search_with_positives(options.dense, texts, queries, positives, depth)
    else:
        ranking = bm25_search_with_positives(texts, queries, positives, depth)
    return select_negatives(ranking, positives, doc_ids, options, counts)


def mine_within(allowed: list[int], texts: list[str], doc_ids: list[str], queries: list[str],
                positives: list[tuple[int, ...]], options: MiningOptions, counts: Counter) -> list[list[int]]:
    """Mine over the corpus subset `allowed` (e.g. one split's passages); indices in and out are global."""
    local = {index: n for n, index in enumerate(allowed)}
    local_positives = [tuple(local[p] for p in positive if p in local) for positive in positives]
    assert all(local_positives), "every query's positive must lie in the corpus it is mined against"
    negatives = mine_negatives([texts[i] for i in allowed], [doc_ids[i] for i in allowed], queries,
                               local_positives, options, counts)
    return [[allowed[n] for n in row] for row in negatives]
