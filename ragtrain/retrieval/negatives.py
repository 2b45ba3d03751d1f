"""Hard-negative mining with BM25, a dense encoder or both fused (hybrid), with filters against false negatives.

For each query a negative is drawn from a rank window of the retriever's list (the very top is skipped:
it is where unlabelled positives sit), never a passage judged relevant, never a passage of the query's own
document unless asked, and never a passage scoring at least `margin` times the positive's score.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ragtrain.messages import Progress
from ragtrain.retrieval.bm25 import bm25_search_chunks, build_bm25

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
    hybrid_weight: float | None = None  # with `dense`: mine by BM25 and `dense` fused at this weight of BM25


@dataclass(frozen=True)
class Ranking:
    indices: np.ndarray  # (queries, depth) corpus indices, best first
    scores: np.ndarray  # (queries, depth)
    positive_scores: np.ndarray  # (queries,) best score among each query's positives


def bm25_rankings(texts: list[str], queries: list[str], positives: list[tuple[int, ...]],
                  depth: int) -> Iterator[Ranking]:
    """Exact BM25 top-`depth` (equal scores by corpus index) and each query's score of its own positives, a chunk of
    queries at a time (bm25.QUERY_CHUNK): only one chunk's rankings are in memory."""
    index = build_bm25(texts)
    for indices, scores, positive_scores in bm25_search_chunks(index, queries, depth, len(texts), positives,
                                                               "mining (bm25)"):
        yield Ranking(indices, scores, positive_scores)


def bm25_search_with_positives(texts: list[str], queries: list[str], positives: list[tuple[int, ...]],
                               depth: int) -> Ranking:
    """Every query's BM25 Ranking at once (small inputs: tests, a round trip)."""
    return _joined(bm25_rankings(texts, queries, positives, depth), min(depth, len(texts)))


def dense_rankings(embedder: Embedder, texts: list[str], queries: list[str], positives: list[tuple[int, ...]],
                   depth: int) -> Iterator[Ranking]:
    """Exact top-`depth` by dot product of the model's embeddings (cosine for normalised models), queries and
    passages as the model reads them (its prompts and length), and each query's score of its own positives; a chunk
    of queries at a time over the (possibly memory-mapped) passage embeddings."""
    import torch  # late: a bm25-only run never loads torch

    from ragtrain.retrieval.embedding import DOCUMENTS, QUERIES
    from ragtrain.retrieval.search import QUERY_CHUNK, dense_search

    embedded = embedder.embed({"mining: passages": (DOCUMENTS, texts), "mining: queries": (QUERIES, queries)})
    corpus_emb = embedded.parts["mining: passages"]  # (C, D), memory-mapped when cached
    with Progress(len(queries), "mining (dense)", "queries") as progress:
        for start in range(0, len(queries), QUERY_CHUNK):
            query_emb = torch.from_numpy(np.asarray(embedded.parts["mining: queries"][start : start + QUERY_CHUNK],
                                                    dtype=np.float32))  # (q, D)
            indices, _ = dense_search(query_emb, corpus_emb, min(depth, len(texts)))  # (q, depth)
            candidates = torch.from_numpy(np.asarray(corpus_emb[indices.ravel()], dtype=np.float32))  # (q * depth, D)
            scores = torch.einsum("qd,qkd->qk", query_emb, candidates.view(*indices.shape, -1)).numpy()
            chunk_positives = positives[start : start + QUERY_CHUNK]
            best = [float(torch.from_numpy(np.asarray(corpus_emb[list(p)], dtype=np.float32)).matmul(query_emb[q]).max())
                    for q, p in enumerate(chunk_positives)]
            progress.update(len(query_emb))
            yield Ranking(indices, scores, np.array(best, dtype=np.float32))


def hybrid_rankings(embedder: Embedder, texts: list[str], queries: list[str], positives: list[tuple[int, ...]],
                    depth: int, weight: float) -> Iterator[Ranking]:
    """Exact top-`depth` by BM25 and the model fused as the hybrid teacher fuses them (z-scores, `weight` of BM25's),
    and each query's fused score of its own positives; a chunk of queries at a time."""
    from ragtrain.retrieval.embedding import DOCUMENTS, QUERIES  # late: a bm25-only run never loads torch
    from ragtrain.retrieval.hybrid import QUERY_CHUNK, HybridScorer
    from ragtrain.retrieval.search import top_k

    embedded = embedder.embed({"mining: passages": (DOCUMENTS, texts), "mining: queries": (QUERIES, queries)})
    scorer = HybridScorer(texts, embedded.parts["mining: passages"])
    query_emb = embedded.parts["mining: queries"]  # (Q, D)
    with Progress(len(queries), "mining (hybrid)", "queries") as progress:
        for start in range(0, len(queries), QUERY_CHUNK):
            fused = scorer.scores(queries[start : start + QUERY_CHUNK], query_emb[start : start + QUERY_CHUNK],
                                  weight)  # (q, C)
            indices, scores = top_k(fused, depth)  # (q, depth) each
            best = [float(fused[q, list(p)].max()) for q, p in enumerate(positives[start : start + QUERY_CHUNK])]
            progress.update(len(fused))
            yield Ranking(indices, scores.astype(np.float32), np.array(best, dtype=np.float32))


def dense_search_with_positives(embedder: Embedder, texts: list[str], queries: list[str],
                                positives: list[tuple[int, ...]], depth: int) -> Ranking:
    """Every query's dense Ranking at once (small inputs: tests, a round trip)."""
    return _joined(dense_rankings(embedder, texts, queries, positives, depth), min(depth, len(texts)))


def _joined(rankings: Iterator[Ranking], depth: int) -> Ranking:
    parts = list(rankings)
    if not parts:
        return Ranking(np.zeros((0, depth), dtype=np.int64), np.zeros((0, depth), dtype=np.float32),
                       np.zeros(0, dtype=np.float32))
    return Ranking(*(np.concatenate([getattr(p, name) for p in parts]) for name in ("indices", "scores", "positive_scores")))


def select_negatives(ranking: Ranking, positives: list[tuple[int, ...]], doc_ids: list[str],
                     options: MiningOptions, counts: Counter, rng: random.Random | None = None,
                     zero_is_unranked: bool = False) -> list[list[int]]:
    """Up to `num_negatives` corpus indices per query from the rank window, after the filters; seeded (`rng`: the
    one generator of every chunk of a split's queries, so chunking changes no draw). `zero_is_unranked` (BM25): a
    passage scoring 0 shares no word with the query and has no rank; the window's places past the last passage
    scoring above 0 go to passages drawn at random from those scoring 0, not to the lowest indices the tie rule
    would give (on a small corpus that is most of the window, and every query would draw the same first passages)."""
    rng = rng or random.Random(options.seed)
    start, end = options.rank_range
    negatives = []
    for row, positive in enumerate(positives):
        own_docs = {doc_ids[p] for p in positive}
        threshold = options.margin * float(ranking.positive_scores[row])
        window = list(zip(ranking.indices[row, start - 1 : end].tolist(), ranking.scores[row, start - 1 : end].tolist()))
        if zero_is_unranked and window and window[-1][1] == 0:
            window = _zeros_drawn_at_random(window, ranking.indices[row][ranking.scores[row] > 0], len(doc_ids), rng)
        candidates = []
        for index, score in window:
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


def _zeros_drawn_at_random(window: list[tuple[int, float]], scored: np.ndarray, corpus_size: int,
                           rng: random.Random) -> list[tuple[int, float]]:
    """The window with its places of score 0 given to distinct passages drawn from every passage scoring 0. A 0 in
    the ranking means every passage scoring above 0 is in it (`scored`), so the others all score 0."""
    ranked = [(index, score) for index, score in window if score > 0]
    excluded, drawn = set(scored.tolist()), []
    while len(ranked) + len(drawn) < len(window):  # the ranking held that many passages of score 0: there are enough
        index = rng.randrange(corpus_size)
        if index not in excluded:
            excluded.add(index)
            drawn.append((index, 0.0))
    return ranked + drawn


def mine_negatives(texts: list[str], doc_ids: list[str], queries: list[str], positives: list[tuple[int, ...]],
                   options: MiningOptions, counts: Counter) -> list[list[int]]:
    """Negatives (corpus indices) for each query; `positives` are the corpus indices judged relevant to it."""
    if options.num_negatives == 0 or not queries or not texts:
        return [[] for _ in queries]
    depth = options.rank_range[1]
    if options.dense is not None and options.hybrid_weight is not None:
        rankings = hybrid_rankings(options.dense, texts, queries, positives, depth, options.hybrid_weight)
    elif options.dense is not None:
        rankings = dense_rankings(options.dense, texts, queries, positives, depth)
    else:
        rankings = bm25_rankings(texts, queries, positives, depth)
    rng, negatives = random.Random(options.seed), []
    for ranking in rankings:
        negatives += select_negatives(ranking, positives[len(negatives) : len(negatives) + len(ranking.indices)],
                                      doc_ids, options, counts, rng, zero_is_unranked=options.dense is None)
    return negatives


def mine_within(allowed: list[int], texts: list[str], doc_ids: list[str], queries: list[str],
                positives: list[tuple[int, ...]], options: MiningOptions, counts: Counter) -> list[list[int]]:
    """Mine over the corpus subset `allowed` (e.g. one split's passages); indices in and out are global."""
    local = np.full(len(texts), -1, dtype=np.int64)  # global index -> position in `allowed` (-1: not allowed)
    local[allowed] = np.arange(len(allowed))
    local_positives = [tuple(int(local[p]) for p in positive if local[p] >= 0) for positive in positives]
    assert all(local_positives), "every query's positive must lie in the corpus it is mined against"
    negatives = mine_negatives([texts[i] for i in allowed], [doc_ids[i] for i in allowed], queries,
                               local_positives, options, counts)
    return [[allowed[n] for n in row] for row in negatives]
