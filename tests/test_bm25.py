"""BM25: scores against the Lucene formula by hand, top-k order, and the empty-vocabulary fallback."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ragtrain.retrieval.bm25 import bm25_scores, bm25_search, build_bm25

TEXTS = ["cat mat", "dog barks", "cat cat dog", "stars planets"]


def lucene_bm25(query: list[str], texts: list[list[str]], k1: float = 1.5, b: float = 0.75) -> list[float]:
    """bm25s' default, Lucene's: idf = ln(1 + (N - df + 0.5) / (df + 0.5)) times tf / (tf + k1 (1 - b + b |d| / avgdl))
    (no (k1 + 1) factor since Lucene 8: it scales every score alike)."""
    n, average = len(texts), sum(map(len, texts)) / len(texts)
    scores = []
    for words in texts:
        total = 0.0
        for term in set(query):
            df = sum(term in other for other in texts)
            tf = words.count(term)
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            total += idf * tf / (tf + k1 * (1 - b + b * len(words) / average)) if tf else 0.0
        scores.append(total)
    return scores


def test_scores_follow_the_lucene_formula():
    [scores] = list(bm25_scores(build_bm25(TEXTS), ["cat dog"]))
    expected = lucene_bm25(["cat", "dog"], [t.split() for t in TEXTS])
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
    assert scores[3] == 0.0 and scores[2] == max(scores)  # both words, cat twice


def test_search_ranks_best_first_with_the_scores_of_every_text():
    index = build_bm25(TEXTS)
    indices, scores = bm25_search(index, ["cat dog", "planets"], depth=2, corpus_size=len(TEXTS))
    assert indices.shape == scores.shape == (2, 2)
    assert indices[0, 0] == 2 and indices[1, 0] == 3
    [all_scores] = list(bm25_scores(index, ["cat dog"]))
    assert scores[0, 0] == pytest.approx(all_scores[2]) and scores[0, 1] == pytest.approx(np.sort(all_scores)[-2])


def test_depth_is_capped_at_the_corpus():
    indices, scores = bm25_search(build_bm25(TEXTS), ["cat"], depth=100, corpus_size=len(TEXTS))
    assert indices.shape == (1, 4) and sorted(indices[0]) == [0, 1, 2, 3]


def test_a_query_without_an_indexed_word_has_no_scores():
    assert list(bm25_scores(build_bm25(TEXTS), ["the of", "cat"]))[0] is None


def test_texts_of_stop_words_only_give_no_index_and_zero_scores_in_corpus_order():
    assert build_bm25(["the of a", "", "and the"]) is None
    indices, scores = bm25_search(None, ["cat", "dog"], depth=2, corpus_size=3)
    assert indices.tolist() == [[0, 1], [0, 1]] and not scores.any()
