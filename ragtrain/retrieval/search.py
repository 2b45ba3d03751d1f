"""Dense search: each query's exact top k by dot product over a corpus of embeddings, in bounded memory."""

from __future__ import annotations

import numpy as np
import torch

QUERY_CHUNK = 1024  # queries scored at once
CORPUS_CHUNK = 16384  # documents scored at once: the score matrix is at most (1024, 16384) floats, 64 MiB


def dense_search(query_emb: torch.Tensor, corpus_emb: torch.Tensor | np.ndarray, depth: int,
                 query_chunk: int = QUERY_CHUNK, corpus_chunk: int = CORPUS_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-`depth` by dot product: (indices, scores), each (queries, min(depth, corpus)), best first.

    Equal scores rank the lower corpus index first, so results do not depend on the chunk sizes. Only one
    (query_chunk, corpus_chunk) score matrix exists at a time; `corpus_emb` may be a memory-mapped array.
    """
    num_docs = len(corpus_emb)
    depth = min(depth, num_docs)
    indices = np.zeros((len(query_emb), depth), dtype=np.int64)
    scores = np.zeros((len(query_emb), depth), dtype=np.float32)
    for q_start in range(0, len(query_emb), query_chunk):
        queries = _as_float_tensor(query_emb[q_start : q_start + query_chunk])  # (Q, dim)
        best_scores = torch.empty(len(queries), 0)
        best_index = torch.empty(len(queries), 0, dtype=torch.long)
        for c_start in range(0, num_docs, corpus_chunk):
            docs = _as_float_tensor(corpus_emb[c_start : c_start + corpus_chunk])  # (C, dim)
            chunk_scores, chunk_index = _top_in_chunk(queries @ docs.T, depth)  # (Q, <=depth) each
            best_scores, best_index = _merge(best_scores, best_index, chunk_scores, chunk_index + c_start, depth)
        indices[q_start : q_start + len(queries)] = best_index.numpy()
        scores[q_start : q_start + len(queries)] = best_scores.numpy()
    return indices, scores


def _as_float_tensor(rows: torch.Tensor | np.ndarray) -> torch.Tensor:
    """A float32 tensor; rows of a (read-only) memory-mapped array are copied, one chunk at a time."""
    return rows.float() if isinstance(rows, torch.Tensor) else torch.from_numpy(np.array(rows, dtype=np.float32))


def _top_in_chunk(scores: torch.Tensor, depth: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-`depth` of each row of (Q, C) scores; rows with ties at the cut take the lowest indices."""
    depth = min(depth, scores.size(1))
    values, index = torch.topk(scores, depth, dim=1)  # (Q, depth), ties broken arbitrarily
    tied = ((scores >= values[:, -1:]).sum(dim=1) > depth).nonzero().flatten()
    for row in tied.tolist():  # rare: an exact tie straddles the cut; a stable sort keeps index order
        order = torch.sort(scores[row], descending=True, stable=True).indices[:depth]
        values[row], index[row] = scores[row, order], order
    return values, index


def _merge(scores_a: torch.Tensor, index_a: torch.Tensor, scores_b: torch.Tensor, index_b: torch.Tensor,
           depth: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The best `depth` of two candidate lists per row, ordered by (score desc, index asc)."""
    scores, index = torch.cat([scores_a, scores_b], dim=1), torch.cat([index_a, index_b], dim=1)  # (Q, 2 depth)
    by_index = torch.argsort(index, dim=1)
    scores, index = scores.gather(1, by_index), index.gather(1, by_index)
    by_score = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :depth]
    return scores.gather(1, by_score), index.gather(1, by_score)
