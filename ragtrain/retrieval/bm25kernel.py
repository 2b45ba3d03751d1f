"""BM25 top-k compiled with numba, when numba is installed (pip install 'ragtrain[fast]'): the same scores and the
same ranking as bm25.py's numpy loop, bit for bit, several times faster on a large corpus.

Each query's score of every text is summed as numpy sums it (float64, term by term in the order given, each term's
weight times its float32 posting weight), rounded to float32, and its `depth` best are kept by the one tie rule
(search.top_k: by score, equal scores by the lower index, at the cut too): texts are scanned in index order into a
heap whose root is the worst kept, so a later text with an equal score never displaces an earlier one. Queries run
in parallel, one block of consecutive queries per thread, each with its own score buffer.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, inline="always")
def _worse(scores, indices, a, b) -> bool:
    """Whether heap slot a ranks below slot b: a lower score, or an equal score and a higher index."""
    return scores[a] < scores[b] or (scores[a] == scores[b] and indices[a] > indices[b])


@njit(cache=True)
def _sift_down(scores, indices, slot, size) -> None:
    while True:
        child = 2 * slot + 1
        if child >= size:
            return
        if child + 1 < size and _worse(scores, indices, child + 1, child):
            child += 1
        if not _worse(scores, indices, child, slot):
            return
        scores[slot], scores[child] = scores[child], scores[slot]
        indices[slot], indices[child] = indices[child], indices[slot]
        slot = child


@njit(cache=True)
def _best(acc, depth, out_indices, out_scores) -> None:
    """The `depth` best texts of `acc` (float64 sums, compared as float32), best first, into out_*."""
    heap_scores = np.empty(depth, np.float32)
    heap_indices = np.empty(depth, np.int64)
    size = 0
    for doc in range(len(acc)):
        score = np.float32(acc[doc])
        if size < depth:  # the heap fills with the first texts; sift each up into place
            heap_scores[size], heap_indices[size] = score, doc
            slot = size
            size += 1
            while slot > 0 and _worse(heap_scores, heap_indices, slot, (slot - 1) // 2):
                parent = (slot - 1) // 2
                heap_scores[slot], heap_scores[parent] = heap_scores[parent], heap_scores[slot]
                heap_indices[slot], heap_indices[parent] = heap_indices[parent], heap_indices[slot]
                slot = parent
        elif score > heap_scores[0]:  # an equal score comes later in index order, so it ranks below: kept out
            heap_scores[0], heap_indices[0] = score, doc
            _sift_down(heap_scores, heap_indices, 0, size)
    for rank in range(size - 1, -1, -1):  # pop the worst to the back: best first
        out_scores[rank], out_indices[rank] = heap_scores[0], heap_indices[0]
        heap_scores[0], heap_indices[0] = heap_scores[rank], heap_indices[rank]
        _sift_down(heap_scores, heap_indices, 0, rank)


@njit(cache=True, parallel=True)
def search_queries(indptr, docs, weights, size, query_indptr, query_terms, query_weights, positive_indptr,
                   positive_docs, depth, threads, out_indices, out_scores, out_positive):
    """Top `depth` (indices, scores) of every query of a chunk, and the best score among each query's positives.
    Queries and positives are given as CSR rows: query q's terms are query_terms[query_indptr[q]:query_indptr[q+1]].
    `threads`: numba.get_num_threads(), passed in (a global read inside would keep the compiled code from caching)."""
    queries = len(query_indptr) - 1
    blocks = min(threads, max(queries, 1))
    for block in prange(blocks):
        acc = np.zeros(size)
        for q in range(block * queries // blocks, (block + 1) * queries // blocks):
            for i in range(query_indptr[q], query_indptr[q + 1]):
                term, weight = query_terms[i], query_weights[i]
                for k in range(indptr[term], indptr[term + 1]):
                    acc[docs[k]] += weight * np.float64(weights[k])
            _best(acc, depth, out_indices[q], out_scores[q])
            best = np.float32(0.0)
            for i in range(positive_indptr[q], positive_indptr[q + 1]):
                best = max(best, np.float32(acc[positive_docs[i]]))
            out_positive[q] = best
            acc[:] = 0.0
