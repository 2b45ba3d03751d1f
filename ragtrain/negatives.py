"""Hard-negative mining with BM25 (bm25s) or a dense encoder, with filters against false negatives.

For each query a negative is drawn from a rank window of the retriever's list (the very top is skipped:
it is where unlabelled positives sit), never a passage judged relevant, never a passage of the query's own
document unless asked, and never a passage scoring at least `margin` times the positive's score.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

import bm25s
import numpy as np
from tqdm import tqdm


@dataclass(frozen=True)
class MiningOptions:
    num_negatives: int = 4
    rank_range: tuple[int, int] = (10, 100)  # 1-based ranks, both ends included
    margin: float = 0.95  # drop candidates scoring >= margin * the positive's score
    same_document: bool = False
    seed: int = 42
    miner: str = "bm25"  # or "dense"
    model: str | None = None  # the dense miner's encoder


@dataclass(frozen=True)
class Ranking:
    indices: np.ndarray  # (queries, depth) corpus indices, best first
    scores: np.ndarray  # (queries, depth)
    positive_scores: np.ndarray  # (queries,) best score among each query's positives


def build_bm25(texts: list[str]) -> bm25s.BM25 | None:
    """A BM25 index of `texts`; None when no text has a word left after stop words (bm25s cannot index an
    empty vocabulary): every score is then 0."""
    tokens = bm25s.tokenize(texts, stopwords="en", show_progress=False)
    if not tokens.vocab:
        return None
    retriever = bm25s.BM25()
    retriever.index(tokens, show_progress=False)
    return retriever


def bm25_search(retriever: bm25s.BM25 | None, queries: list[str], k: int, corpus_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k passage indices and scores per query: (num_queries, min(k, corpus_size)) each."""
    k = min(k, corpus_size)
    if retriever is None:  # no indexed word: every passage scores 0, in corpus order
        return np.tile(np.arange(k), (len(queries), 1)), np.zeros((len(queries), k), dtype=np.float32)
    tokens = bm25s.tokenize(queries, stopwords="en", show_progress=False)
    indices, scores = retriever.retrieve(tokens, k=k, show_progress=False, n_threads=1)
    return np.asarray(indices), np.asarray(scores)


def bm25_ranking(texts: list[str], queries: list[str], positives: list[tuple[int, ...]], depth: int) -> Ranking:
    """Exact BM25 top-`depth` per query, and each query's score for its own positives."""
    retriever = build_bm25(texts)
    depth = min(depth, len(texts))
    if retriever is None:  # no indexed word: every passage scores 0, in corpus order
        return Ranking(np.tile(np.arange(depth), (len(queries), 1)), np.zeros((len(queries), depth), dtype=np.float32),
                       np.zeros(len(queries), dtype=np.float32))
    tokens = bm25s.tokenize(queries, stopwords="en", return_ids=False, show_progress=False)
    indices = np.zeros((len(queries), depth), dtype=np.int64)
    scores = np.zeros((len(queries), depth), dtype=np.float32)
    positive_scores = np.zeros(len(queries), dtype=np.float32)
    for row, (query_tokens, positive) in enumerate(tqdm(list(zip(tokens, positives)), desc="mining (bm25)",
                                                        unit="query", disable=None)):
        ids = retriever.get_tokens_ids(query_tokens)
        if not ids:
            indices[row] = np.arange(depth)  # no known word: every passage scores 0
            continue
        all_scores = retriever.get_scores_from_ids(ids)  # (corpus,)
        top = np.argpartition(-all_scores, depth - 1)[:depth]
        top = top[np.lexsort((top, -all_scores[top]))]  # by score, ties by index: deterministic
        indices[row], scores[row] = top, all_scores[top]
        positive_scores[row] = all_scores[list(positive)].max()
    return Ranking(indices, scores, positive_scores)


def dense_ranking(texts: list[str], queries: list[str], positives: list[tuple[int, ...]], depth: int,
                  model: str, batch_size: int = 64, max_length: int = 256) -> Ranking:
    """Exact top-`depth` by dot product of the model's embeddings (cosine for normalised models)."""
    import torch

    from ragtrain.evaluate import dense_rankings, embed_texts  # late: evaluate imports this module
    from ragtrain.model import load_encoder
    from ragtrain.runtime import resolve_device

    device = resolve_device("auto")
    encoder, tokenizer = load_encoder(model)
    encoder.to(device)
    corpus_emb = embed_texts(encoder, tokenizer, texts, batch_size, max_length, device, "mining: passages")  # (C, D)
    query_emb = embed_texts(encoder, tokenizer, queries, batch_size, max_length, device, "mining: queries")  # (Q, D)
    indices = dense_rankings(query_emb, corpus_emb, min(depth, len(texts)))  # (Q, depth)
    scores = np.zeros(indices.shape, dtype=np.float32)
    for start in range(0, len(queries), 1024):
        chunk = torch.from_numpy(indices[start : start + 1024])
        scores[start : start + 1024] = torch.einsum("qd,qkd->qk", query_emb[start : start + 1024], corpus_emb[chunk]).numpy()
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
    if options.miner == "dense":
        ranking = dense_ranking(texts, queries, positives, depth, options.model or "")
    else:
        ranking = bm25_ranking(texts, queries, positives, depth)
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
