"""BM25: scores against the Lucene formula by hand and bm25s', top-k order and ties, the index built in pieces, the
compiled search against numpy's, and the empty-vocabulary fallback."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ragtrain.retrieval import bm25
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


def test_scores_are_bm25s_scores():
    """The index is built here, not by bm25s, but its numbers are bm25s' (float32 rounding apart)."""
    import bm25s

    rng = np.random.default_rng(1)
    vocab = "river mountain city bread oven yeast star planet orbit code cache memory the of and".split()
    texts = [" ".join(rng.choice(vocab, rng.integers(1, 30))) for _ in range(300)]
    queries = [" ".join(rng.choice(vocab, 4)) for _ in range(20)]
    reference = bm25s.BM25()
    reference.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
    tokens = bm25s.tokenize(queries, stopwords="en", return_ids=False, show_progress=False)
    for ours, query_tokens in zip(bm25_scores(build_bm25(texts), queries), tokens):
        np.testing.assert_allclose(ours, reference.get_scores_from_ids(reference.get_tokens_ids(query_tokens)),
                                   rtol=1e-6, atol=1e-6)


def test_an_index_built_a_few_texts_at_a_time_is_the_same_index(monkeypatch):
    rng = np.random.default_rng(2)
    texts = [" ".join(rng.choice(["cat", "dog", "mat", "sun", "moon", "star"], rng.integers(1, 9))) for _ in range(50)]
    whole = build_bm25(texts)
    monkeypatch.setattr(bm25, "INDEX_CHUNK", 7)
    pieces = build_bm25(texts)
    assert whole.vocabulary == pieces.vocabulary
    for name in ("indptr", "docs", "weights"):
        np.testing.assert_array_equal(getattr(whole, name), getattr(pieces, name))


def test_equal_scores_rank_by_the_lower_index_at_the_cut_too():
    texts = ["cat", "dog", "cat", "cat", "cat dog"]  # texts 0, 2 and 3 score alike for 'cat'; 4 is longer
    indices, scores = bm25_search(build_bm25(texts), ["cat", "bird"], depth=2, corpus_size=len(texts))
    assert indices[0].tolist() == [0, 2] and scores[0, 0] == scores[0, 1]
    assert indices[1].tolist() == [0, 1] and not scores[1].any()  # no indexed word: every text 0, in corpus order


corpus_words = st.lists(st.sampled_from(["cat", "dog", "mat", "sun", "moon", "the"]), min_size=0, max_size=8)


@pytest.mark.skipif(bm25._kernel() is None, reason="numba is not installed (pip install 'ragtrain[fast]')")
@settings(max_examples=40, deadline=None)
@given(texts=st.lists(corpus_words.map(" ".join), min_size=1, max_size=40),
       queries=st.lists(corpus_words.map(" ".join), min_size=1, max_size=12), depth=st.integers(1, 50))
def test_the_compiled_search_gives_the_numpy_search_bit_for_bit(texts, queries, depth):
    """Many ties (six words): the numba kernel's heap and numpy's top_k keep the same texts in the same order."""
    index = build_bm25(texts)
    assume(index is not None)
    depth = min(depth, len(texts))
    positives = [tuple(range(min(2, len(texts))))] * len(queries)
    for ours, theirs in zip(bm25._search_numpy(index, queries, positives, depth), bm25._kernel()(index, queries, positives, depth)):
        np.testing.assert_array_equal(ours, theirs)
    _, _, best = bm25._search_numpy(index, queries, positives, depth)
    [all_scores] = list(bm25_scores(index, queries[:1]))
    assert best[0] == (0 if all_scores is None else all_scores[list(positives[0])].max())
