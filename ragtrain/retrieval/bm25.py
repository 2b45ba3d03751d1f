"""BM25 (bm25s) over a list of texts: the index, each query's top k, and each query's score of every text.

The only module that imports bm25s. Texts and queries are tokenised with English stop words removed. An index
whose vocabulary would be empty (no text has a word left: bm25s cannot index that) is None, and every text then
scores 0 for every query.
"""

from __future__ import annotations

from collections.abc import Iterator

import bm25s
import numpy as np


def build_bm25(texts: list[str]) -> bm25s.BM25 | None:
    """A BM25 index of `texts`; None when no text has a word left after stop words (every score is then 0)."""
    tokens = bm25s.tokenize(texts, stopwords="en", show_progress=False)
    if not tokens.vocab:
        return None
    index = bm25s.BM25()
    index.index(tokens, show_progress=False)
    return index


def bm25_search(index: bm25s.BM25 | None, queries: list[str], depth: int, corpus_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-`depth` text indices and scores per query, best first: (num_queries, min(depth, corpus_size)) each."""
    depth = min(depth, corpus_size)
    if index is None:  # no indexed word: every text scores 0, in corpus order
        return np.tile(np.arange(depth), (len(queries), 1)), np.zeros((len(queries), depth), dtype=np.float32)
    tokens = bm25s.tokenize(queries, stopwords="en", show_progress=False)
    indices, scores = index.retrieve(tokens, k=depth, show_progress=False, n_threads=1)
    return np.asarray(indices), np.asarray(scores)


def bm25_scores(index: bm25s.BM25, queries: list[str]) -> Iterator[np.ndarray | None]:
    """Each query's score of every indexed text, (corpus,), in query order; None for a query none of whose
    words is in the index (every text scores 0 for it)."""
    tokens = bm25s.tokenize(queries, stopwords="en", return_ids=False, show_progress=False)
    for query_tokens in tokens:
        ids = index.get_tokens_ids(query_tokens)
        yield index.get_scores_from_ids(ids) if ids else None
