"""Each query's top k of a corpus, exactly, in bounded memory: `top_k`, the one tie rule every ranking ragtrain makes
follows (BM25, dense, hybrid, mining: by score, equal scores by the lower corpus index, at the cut too), and
`dense_search` by dot product over embeddings scored a chunk at a time. Ties broken the same way everywhere make a
ranking independent of chunk sizes and of the order a library happens to return equal scores in."""

from __future__ import annotations

import numpy as np
import torch

QUERY_CHUNK = 1024  # queries scored at once
CORPUS_CHUNK = 16384  # documents scored at once: the score matrix is at most (1024, 16384) floats, 64 MiB


def top_k(scores: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's `depth` best columns: (indices, scores), each (rows, min(depth, columns)), best first, equal
    scores by the lower column, also where equal scores straddle the cut."""
    scores = np.asarray(scores)
    rows, columns = scores.shape
    depth = min(depth, columns)
    if depth < columns:
        index = np.argpartition(-scores, depth - 1, axis=1)[:, :depth]  # (rows, depth): the best, in no order
        cut = np.take_along_axis(scores, index, axis=1).min(axis=1, keepdims=True)  # (rows, 1)
        for row in np.nonzero((scores >= cut).sum(axis=1) > depth)[0]:  # rare: a tie straddles the cut
            index[row] = np.argsort(-scores[row], kind="stable")[:depth]
    else:
        index = np.broadcast_to(np.arange(columns), (rows, columns))
    return _ordered(index, np.take_along_axis(scores, index, axis=1), depth)


def _ordered(index: np.ndarray, scores: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """The best `depth` of each row's (index, score) candidates, by score, equal scores by the lower index."""
    order = np.lexsort((index, -scores), axis=1)[:, :depth]  # (rows, depth)
    return np.take_along_axis(index, order, axis=1).astype(np.int64), np.take_along_axis(scores, order, axis=1)


def dense_search(query_emb: torch.Tensor | np.ndarray, corpus_emb: torch.Tensor | np.ndarray, depth: int,
                 query_chunk: int = QUERY_CHUNK, corpus_chunk: int = CORPUS_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-`depth` by dot product: (indices, scores), each (queries, min(depth, corpus)), best first.

    Only one (query_chunk, corpus_chunk) score matrix exists at a time; `corpus_emb` may be a memory-mapped array.
    """
    num_docs = len(corpus_emb)
    depth = min(depth, num_docs)
    indices = np.zeros((len(query_emb), depth), dtype=np.int64)
    scores = np.zeros((len(query_emb), depth), dtype=np.float32)
    for q_start in range(0, len(query_emb), query_chunk):
        queries = _as_float_tensor(query_emb[q_start : q_start + query_chunk])  # (Q, dim)
        best_index = np.zeros((len(queries), 0), dtype=np.int64)
        best_scores = np.zeros((len(queries), 0), dtype=np.float32)
        for c_start in range(0, num_docs, corpus_chunk):
            docs = _as_float_tensor(corpus_emb[c_start : c_start + corpus_chunk])  # (C, dim)
            chunk_index, chunk_scores = top_k((queries @ docs.T).numpy(), depth)  # (Q, <=depth) each
            best_index, best_scores = _ordered(np.concatenate([best_index, chunk_index + c_start], axis=1),
                                               np.concatenate([best_scores, chunk_scores], axis=1), depth)
        indices[q_start : q_start + len(queries)] = best_index
        scores[q_start : q_start + len(queries)] = best_scores
    return indices, scores


def _as_float_tensor(rows: torch.Tensor | np.ndarray) -> torch.Tensor:
    """A float32 tensor; rows of a (read-only) memory-mapped array are copied, one chunk at a time."""
    return rows.float() if isinstance(rows, torch.Tensor) else torch.from_numpy(np.array(rows, dtype=np.float32))
