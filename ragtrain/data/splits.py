"""Which split each item goes to: whole groups (a document, or queries that share a text) to train, val or test.

Splitting by group keeps every text of a group on one side, so no held-out query or passage is seen in training.
"""

from __future__ import annotations

import random

from ragtrain.errors import UserError

SPLITS = ("train", "val", "test")


def split_groups(group_ids: list[str], val_fraction: float, test_fraction: float, seed: int,
                 what: str = "documents") -> dict[str, str]:
    """Assign whole groups (documents) to train / val / test, seeded, so none is on two sides."""
    ids = sorted(set(group_ids))
    random.Random(seed).shuffle(ids)
    n_val = max(1, round(len(ids) * val_fraction)) if val_fraction > 0 else 0
    n_test = max(1, round(len(ids) * test_fraction)) if test_fraction > 0 else 0
    if n_val + n_test >= len(ids):
        raise UserError(f"{len(ids)} {what} are too few for --val-fraction {val_fraction:g} and --test-fraction "
                        f"{test_fraction:g} (each held-out split needs one, training at least one); add data "
                        "or lower the fractions")
    split = {doc_id: "val" for doc_id in ids[:n_val]}
    split.update({doc_id: "test" for doc_id in ids[n_val : n_val + n_test]})
    split.update({doc_id: "train" for doc_id in ids[n_val + n_test :]})
    return split


def connected_groups(members: list[tuple[int, ...]]) -> list[int]:
    """For each item (a query with its positives), a group number; items sharing a positive share a group."""
    parent: dict[int, int] = {}

    def root(x: int) -> int:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for positives in members:
        for p in positives[1:]:
            parent[root(p)] = root(positives[0])
    return [root(positives[0]) for positives in members]


def text_groups(items: list[tuple[str, ...]]) -> list[int]:
    """A group number per item (a query text with its positives); items sharing any text share a group, so a
    split by group never puts one query or one passage on two sides."""
    node: dict[str, int] = {}
    return connected_groups([tuple(node.setdefault(text, len(node)) for text in item) for item in items])


def sample_by_passage(passages: list[int], limit: int, seed: int) -> list[int]:
    """Positions of the items kept when at most `limit` may stay (0: all), each item made from passage
    `passages[n]`: the items of passages drawn in a seeded order, first drawn first, until `limit`; returned in
    their own order. A larger limit keeps every item a smaller one keeps."""
    if limit <= 0 or limit >= len(passages):
        return list(range(len(passages)))
    distinct = sorted(set(passages))
    random.Random(seed).shuffle(distinct)
    rank = {passage: n for n, passage in enumerate(distinct)}
    return sorted(sorted(range(len(passages)), key=lambda n: (rank[passages[n]], n))[:limit])


def same_share(limit: int, capped: int, other: int) -> int:
    """The cap of another split that keeps the share `limit` keeps of `capped` items (0, no cap, when that is all);
    at least one item."""
    if limit <= 0 or limit >= capped:
        return 0
    return max(1, round(other * limit / capped))
