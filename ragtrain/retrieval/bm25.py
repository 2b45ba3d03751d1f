"""BM25 over a list of texts, built and searched in bounded memory: the index, each query's exact top k, and each
query's score of every text (for the hybrid fusion).

Scores are bm25s' defaults, Lucene's formula (k1 1.5, b 0.75): idf = ln(1 + (N - df + 0.5) / (df + 0.5)) times
tf / (tf + k1 (1 - b + b |d| / avgdl)), over bm25s' tokens (lower case, words of two or more letters or digits,
English stop words removed); a query word counts as often as it occurs. The index is built here rather than by bm25s,
which holds every text's tokens as Python lists and a second copy of every posting while it sorts them (gigabytes
at a million passages): texts are tokenised INDEX_CHUNK at a time into postings that are sorted by term once.

A query's score of a text is the float32 rounding of a float64 sum taken term by term in term-id order, so the same
numbers come out of the numpy loop here and of the numba kernel (bm25kernel.py, used when numba is installed), and
ranks follow search.top_k's rule: by score, equal scores by the lower text index, at the cut too. An index whose
vocabulary would be empty (no text has a word left) is None, and every text then scores 0 for every query.
"""

from __future__ import annotations

import importlib.util
import re
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from bm25s.stopwords import STOPWORDS_EN

from ragtrain.messages import Progress
from ragtrain.retrieval.search import top_k

K1, B = 1.5, 0.75
TOKEN = re.compile(r"(?u)\b\w\w+\b")  # bm25s' (and scikit-learn's) default token pattern
STOPWORDS = frozenset(STOPWORDS_EN)
INDEX_CHUNK = 20_000  # texts tokenised at a time: their postings as Python lists stay small
SCORE_CHUNK = 1 << 22  # postings weighted at a time: a few bounded temporaries
QUERY_CHUNK = 1024  # queries searched at a time: their (queries, depth) results are what the caller holds
COMPILED_WORK = 10**9  # queries x texts from which compiling the numba search (seconds, once) pays


@dataclass(frozen=True)
class BM25Index:
    """Postings by term: term t's texts are docs[indptr[t]:indptr[t + 1]] (ascending), with its BM25 weight in each."""

    vocabulary: dict[str, int]
    indptr: np.ndarray  # (terms + 1,) int64
    docs: np.ndarray  # (postings,) int32
    weights: np.ndarray  # (postings,) float32
    size: int  # texts indexed


def tokenize(text: str) -> list[str]:
    return [token for token in TOKEN.findall(text.lower()) if token not in STOPWORDS]


def build_bm25(texts: Sequence[str]) -> BM25Index | None:
    """A BM25 index of `texts`; None when no text has a word left after stop words (every score is then 0). Each
    chunk's postings wait in a temporary file until every text is read (the index's size is known only then), so
    memory holds the index and one chunk, never the index twice."""
    vocabulary: dict[str, int] = {}
    lengths = np.zeros(len(texts), dtype=np.int64)  # tokens per text, repeats included
    frequency = np.zeros(0, dtype=np.int64)  # texts per term
    chunks = []  # (postings, distinct terms per text) of INDEX_CHUNK texts each
    with tempfile.TemporaryFile(prefix="ragtrain-bm25-") as spill:
        with Progress(len(texts), "indexing (bm25)", "texts") as progress:
            for start in range(0, len(texts), INDEX_CHUNK):
                terms, counts, per_text = _chunk_postings(texts[start : start + INDEX_CHUNK], vocabulary,
                                                          lengths[start : start + INDEX_CHUNK])
                frequency = np.pad(frequency, (0, len(vocabulary) - len(frequency)))  # new terms start at 0
                frequency += np.bincount(terms, minlength=len(vocabulary))
                spill.write(terms.tobytes())
                spill.write(counts.tobytes())
                chunks.append((len(terms), per_text))
                progress.update(len(per_text))
        if not vocabulary:
            return None
        spill.seek(0)
        indptr, docs, weights = _postings_by_term(spill, chunks, frequency)
    _weigh(indptr, docs, weights, lengths)
    return BM25Index(vocabulary, indptr, docs, weights, len(texts))


def _chunk_postings(texts: Sequence[str], vocabulary: dict[str, int],
                    lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The texts' postings in text order: (term ids int32, counts float32, distinct terms per text int64); new terms
    join `vocabulary`, and each text's token count goes into `lengths`."""
    terms, counts, per_text = [], [], []
    for n, text in enumerate(texts):
        counted = Counter(tokenize(text))
        terms += [vocabulary.setdefault(token, len(vocabulary)) for token in counted]
        counts += counted.values()
        per_text.append(len(counted))
        lengths[n] = counted.total()
    return np.array(terms, dtype=np.int32), np.array(counts, dtype=np.float32), np.array(per_text, dtype=np.int64)


def _postings_by_term(spill: BinaryIO, chunks: list[tuple[int, np.ndarray]],
                      frequency: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indptr, docs, term counts) sorted by term, then text, from the chunks' postings read back one at a time."""
    indptr = np.concatenate([[0], np.cumsum(frequency)])
    docs = np.empty(indptr[-1], dtype=np.int32)
    counts = np.empty(indptr[-1], dtype=np.float32)
    filled = indptr[:-1].copy()  # where each term's next posting goes
    first_doc = 0
    for postings, per_text in chunks:
        terms = np.frombuffer(spill.read(4 * postings), dtype=np.int32)
        chunk_counts = np.frombuffer(spill.read(4 * postings), dtype=np.float32)
        order = np.argsort(terms, kind="stable")  # by term; texts stay in order within a term
        sorted_terms = terms[order]
        starts = np.flatnonzero(np.r_[True, sorted_terms[1:] != sorted_terms[:-1]])  # each term's first element
        rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
        target = filled[sorted_terms] + rank
        docs[target] = (first_doc + np.repeat(np.arange(len(per_text)), per_text))[order]
        counts[target] = chunk_counts[order]
        filled[sorted_terms[starts]] += np.diff(np.r_[starts, len(order)])  # each term once per chunk
        first_doc += len(per_text)
    return indptr, docs, counts


def _weigh(indptr: np.ndarray, docs: np.ndarray, counts: np.ndarray, lengths: np.ndarray) -> None:
    """Term counts -> BM25 weights, in place, as bm25s computes them: a float32 idf times a float64 tf part."""
    texts, frequency = len(lengths), np.diff(indptr)
    idf = np.log(1 + (texts - frequency + 0.5) / (frequency + 0.5)).astype(np.float32).astype(np.float64)
    average = lengths.mean()
    for start in range(0, len(docs), SCORE_CHUNK):
        end = min(start + SCORE_CHUNK, len(docs))
        term = np.searchsorted(indptr, np.arange(start, end), side="right") - 1
        tf = counts[start:end].astype(np.float64)
        counts[start:end] = idf[term] * (tf / (K1 * ((1 - B) + B * lengths[docs[start:end]] / average) + tf))


def query_terms(index: BM25Index, query: str) -> tuple[np.ndarray, np.ndarray]:
    """A query's indexed terms in id order and how often each occurs: (term ids int64, counts float64)."""
    counted = Counter(index.vocabulary[t] for t in tokenize(query) if t in index.vocabulary)
    terms = np.array(sorted(counted), dtype=np.int64)
    return terms, np.array([counted[t] for t in terms.tolist()], dtype=np.float64)


def _accumulate(index: BM25Index, query: str, acc: np.ndarray) -> None:
    """Add the query's score of every text to `acc` (float64, zeros on entry), term by term in id order."""
    for term, count in zip(*query_terms(index, query)):
        start, end = index.indptr[term], index.indptr[term + 1]
        acc[index.docs[start:end]] += count * index.weights[start:end].astype(np.float64)


def bm25_scores(index: BM25Index, queries: Sequence[str]) -> Iterator[np.ndarray | None]:
    """Each query's score of every indexed text, (size,) float32, in query order; None for a query none of whose
    words is in the index (every text scores 0 for it)."""
    for query in queries:
        if not len(query_terms(index, query)[0]):
            yield None
            continue
        acc = np.zeros(index.size)
        _accumulate(index, query, acc)
        yield acc.astype(np.float32)


def bm25_search_chunks(index: BM25Index | None, queries: Sequence[str], depth: int, corpus_size: int,
                       positives: Sequence[Sequence[int]] | None = None, desc: str = "searching (bm25)"
                       ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Each QUERY_CHUNK of queries' top min(depth, corpus_size): (indices (q, depth) int64, scores (q, depth) float32,
    the best score among each query's `positives` (q,) float32, 0 where none are given), in query order."""
    depth = min(depth, corpus_size)
    compiled = _kernel() if index is not None and len(queries) * corpus_size >= COMPILED_WORK else None
    with Progress(len(queries), desc, "queries") as progress:
        for start in range(0, len(queries), QUERY_CHUNK):
            chunk = queries[start : start + QUERY_CHUNK]
            chunk_positives = positives[start : start + QUERY_CHUNK] if positives is not None else [()] * len(chunk)
            if index is None:  # no indexed word: every text scores 0, in corpus order
                found = (np.tile(np.arange(depth), (len(chunk), 1)), np.zeros((len(chunk), depth), dtype=np.float32),
                         np.zeros(len(chunk), dtype=np.float32))
            else:
                found = (compiled or _search_numpy)(index, chunk, chunk_positives, depth)
            progress.update(len(chunk))
            yield found


def bm25_search(index: BM25Index | None, queries: Sequence[str], depth: int, corpus_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-`depth` text indices and scores per query, best first: (num_queries, min(depth, corpus_size)) each."""
    depth = min(depth, corpus_size)
    found = list(bm25_search_chunks(index, queries, depth, corpus_size))
    if not found:
        return np.zeros((0, depth), dtype=np.int64), np.zeros((0, depth), dtype=np.float32)
    return np.concatenate([f[0] for f in found]), np.concatenate([f[1] for f in found])


def _search_numpy(index: BM25Index, queries: Sequence[str], positives: Sequence[Sequence[int]],
                  depth: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    indices = np.zeros((len(queries), depth), dtype=np.int64)
    scores = np.zeros((len(queries), depth), dtype=np.float32)
    positive_scores = np.zeros(len(queries), dtype=np.float32)
    acc = np.zeros(index.size)
    for row, (query, positive) in enumerate(zip(queries, positives)):
        acc[:] = 0.0
        _accumulate(index, query, acc)
        (indices[row],), (scores[row],) = top_k(acc.astype(np.float32)[None, :], depth)
        positive_scores[row] = np.float32(acc[list(positive)].max()) if len(positive) else 0.0
    return indices, scores, positive_scores


def _kernel():
    """The numba search when numba is installed, else None (the numpy loop gives the same numbers, slower)."""
    if importlib.util.find_spec("numba") is None:
        return None
    from numba import get_num_threads

    from ragtrain.retrieval.bm25kernel import search_queries  # late: compiling costs seconds; only a search needs it

    def search(index: BM25Index, queries: Sequence[str], positives: Sequence[Sequence[int]],
               depth: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        terms = [query_terms(index, query) for query in queries]
        query_indptr = np.concatenate([[0], np.cumsum([len(t) for t, _ in terms])]).astype(np.int64)
        positive_indptr = np.concatenate([[0], np.cumsum([len(p) for p in positives])]).astype(np.int64)
        flat_positives = np.array([p for positive in positives for p in positive], dtype=np.int64)
        indices = np.zeros((len(queries), depth), dtype=np.int64)
        scores = np.zeros((len(queries), depth), dtype=np.float32)
        positive_scores = np.zeros(len(queries), dtype=np.float32)
        search_queries(index.indptr, index.docs, index.weights, index.size, query_indptr,
                       np.concatenate([t for t, _ in terms] + [np.zeros(0, np.int64)]),
                       np.concatenate([c for _, c in terms] + [np.zeros(0)]), positive_indptr, flat_positives,
                       depth, get_num_threads(), indices, scores, positive_scores)
        return indices, scores, positive_scores

    return search
