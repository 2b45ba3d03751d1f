"""Splits by group: every group on exactly one side, the asked sizes, seeded; groups joined through shared texts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragtrain.data.splits import connected_groups, split_groups, text_groups
from ragtrain.errors import UserError


@settings(max_examples=60, deadline=None)
@given(n=st.integers(3, 300), val=st.floats(0, 0.45), test=st.floats(0, 0.45), seed=st.integers(0, 10))
def test_split_assigns_every_group_once_with_the_asked_sizes(n, val, test, seed):
    ids = [f"doc{i}" for i in range(n)]
    try:
        split = split_groups(ids, val, test, seed)
    except UserError:
        return
    assert set(split) == set(ids)
    sizes = {s: sum(v == s for v in split.values()) for s in ("train", "val", "test")}
    assert sizes["val"] == (max(1, round(n * val)) if val > 0 else 0)
    assert sizes["test"] == (max(1, round(n * test)) if test > 0 else 0)
    assert sizes["train"] >= 1
    assert split == split_groups(list(reversed(ids)), val, test, seed)


def test_too_few_groups_for_the_held_out_splits_name_the_fractions():
    with pytest.raises(UserError, match="2 groups of pairs are too few for --val-fraction 0.5 and --test-fraction 0.5"):
        split_groups(["a", "b"], 0.5, 0.5, seed=0, what="groups of pairs")


def test_items_sharing_a_member_share_a_group_transitively():
    groups = connected_groups([(0, 1), (2,), (1, 3), (3, 4), (5, 2)])
    assert groups[0] == groups[2] == groups[3]  # 0-1, 1-3, 3-4
    assert groups[1] == groups[4]  # 2 and 5-2
    assert groups[0] != groups[1]


def test_text_groups_join_queries_that_share_a_query_or_a_passage_text():
    groups = text_groups([("q1", "p1"), ("q2", "p2"), ("q1", "p3"), ("q3", "p2", "p4"), ("q4", "p5")])
    assert groups[0] == groups[2] and groups[1] == groups[3]
    assert len({groups[0], groups[1], groups[4]}) == 3
