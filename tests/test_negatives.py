"""Hard-negative mining: the rank window, the filters (positive, own document, false-negative margin)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from ragtrain.model.loading import load_encoder
from ragtrain.model.runtime import Runtime, resolve_device
from ragtrain.retrieval.cache import EmbeddingCache
from ragtrain.retrieval.embedding import Embedder
from ragtrain.retrieval.negatives import (
    MiningOptions,
    Ranking,
    bm25_search_with_positives,
    mine_negatives,
    mine_within,
    select_negatives,
)


def ranking(indices, scores, positive_score):
    return Ranking(np.array([indices]), np.array([scores], dtype=np.float32), np.array([positive_score], dtype=np.float32))


def test_window_skips_the_top_and_the_positive():
    rank = ranking([5, 0, 1, 2, 3, 4], [9, 8, 7, 6, 5, 4], 100.0)
    options = MiningOptions(num_negatives=10, rank_range=(2, 5), margin=0.95)
    negatives = select_negatives(rank, [(1,)], [f"d{i}" for i in range(6)], options, Counter())
    assert negatives == [[0, 2, 3]]  # ranks 2..5 are 0, 1, 2, 3; 1 is the positive


def test_false_negative_margin_is_relative_to_the_positive_score():
    rank = ranking([0, 1, 2, 3], [10.0, 9.5, 9.4, 3.0], 10.0)
    counts: Counter = Counter()
    negatives = select_negatives(rank, [(9,)], [f"d{i}" for i in range(10)],
                                 MiningOptions(num_negatives=4, rank_range=(1, 4), margin=0.95), counts)
    assert negatives == [[2, 3]]  # 10.0 and 9.5 are >= 0.95 * 10
    assert counts["negatives_skipped_false_negative"] == 2


def test_own_document_is_skipped_unless_asked():
    rank = ranking([0, 1, 2], [3.0, 2.0, 1.0], 10.0)
    doc_ids = ["a", "a", "b", "a"]
    options = MiningOptions(num_negatives=3, rank_range=(1, 3))
    assert select_negatives(rank, [(3,)], doc_ids, options, Counter()) == [[2]]
    options = MiningOptions(num_negatives=3, rank_range=(1, 3), same_document=True)
    assert select_negatives(rank, [(3,)], doc_ids, options, Counter()) == [[0, 1, 2]]


def test_bm25_search_with_positives_scores_the_positive_and_orders_by_score():
    texts = ["the cat sat on the mat", "dogs bark at night", "a cat and a dog", "stars and planets"]
    rank = bm25_search_with_positives(texts, ["cat mat"], [(0,)], depth=4)
    assert rank.indices[0, 0] == 0 and rank.indices[0, 1] == 2
    assert rank.positive_scores[0] == pytest.approx(rank.scores[0, 0])
    assert list(rank.scores[0]) == sorted(rank.scores[0], reverse=True)


def test_mined_negatives_never_include_a_positive_and_are_seeded():
    rng = np.random.default_rng(0)
    vocab = "river mountain city bread oven yeast star planet orbit code cache memory".split()
    texts = [" ".join(rng.choice(vocab, 12)) for _ in range(60)]
    queries = [" ".join(rng.choice(vocab, 3)) for _ in range(40)]
    positives = [(int(i), int(i) + 1) for i in rng.integers(0, 59, 40)]
    options = MiningOptions(num_negatives=5, rank_range=(1, 60), margin=10.0)
    first = mine_negatives(texts, [str(i) for i in range(60)], queries, positives, options, Counter())
    again = mine_negatives(texts, [str(i) for i in range(60)], queries, positives, options, Counter())
    assert first == again and len(first) == len(positives) == 40
    assert all(len(n) == 5 and not set(n) & set(p) for n, p in zip(first, positives))


def test_mine_within_only_returns_allowed_passages():
    texts = [f"bread oven yeast {i}" for i in range(10)]
    allowed = [1, 3, 5, 7, 9]
    negatives = mine_within(allowed, texts, [str(i) for i in range(10)], ["bread oven"], [(3,)],
                            MiningOptions(num_negatives=10, rank_range=(1, 10), margin=10.0), Counter())
    assert sorted(negatives[0]) == [1, 5, 7, 9]


def test_dense_miner_with_a_tiny_model(tiny_model):
    texts = ["the cat and the dog", "bread in the oven", "a star and a planet", "river water fish", "code cache"]
    runtime = Runtime(resolve_device("auto"))
    dense = Embedder(load_encoder(str(tiny_model)).to(runtime.device), str(tiny_model), runtime, EmbeddingCache(None))
    options = MiningOptions(num_negatives=2, rank_range=(1, 5), margin=10.0, dense=dense)
    negatives = mine_negatives(texts, [str(i) for i in range(5)], ["cat dog", "oven bread"], [(0,), (1,)], options, Counter())
    assert [len(n) for n in negatives] == [2, 2] and 0 not in negatives[0] and 1 not in negatives[1]


def test_window_places_past_the_last_matching_passage_go_to_passages_drawn_at_random():
    """A query sharing words with 3 of 200 passages: BM25 ranks those 3; the rest of ranks 1-60 score 0 and have no
    rank, so they are drawn at random (seeded) among the 197, not taken as the lowest indices a tie would give."""
    texts = [f"river fish {i}" for i in range(197)] + ["bread oven", "oven", "bread"]
    doc_ids = [str(i) for i in range(200)]
    options = MiningOptions(num_negatives=59, rank_range=(1, 60), margin=10.0)  # the whole window but the positive
    first = mine_negatives(texts, doc_ids, ["bread oven"], [(197,)], options, Counter())[0]
    again = mine_negatives(texts, doc_ids, ["bread oven"], [(197,)], options, Counter())[0]
    other = mine_negatives(texts, doc_ids, ["bread oven"], [(197,)], MiningOptions(59, (1, 60), 10.0, seed=7), Counter())[0]
    assert first == again and first != other and len(first) == 59
    assert {198, 199} <= set(first)  # the two other matching passages are always in the window
    drawn = set(first) - {198, 199}
    assert max(drawn) > 100 and not drawn <= set(range(60))  # spread over the 197, not the first 58 by index
