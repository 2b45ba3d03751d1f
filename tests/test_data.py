"""Triples on disk, the length-grouped sampler (full batches), the false-negative mask, and collation."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from ragtrain.data.triples import (
    Triple,
    collate,
    epoch_batches,
    false_negative_mask,
    load_triples,
    micro_batches,
    require_distinct_passages,
    tokenize_triples,
)
from ragtrain.errors import UserError
from tests.conftest import encoder_at


def varied_triples(count: int, seed: int = 0, shared_every: int = 0) -> list[Triple]:
    """Triples of varied lengths; with shared_every, some passages repeat across triples."""
    rng = random.Random(seed)
    rows = []
    for n in range(count):
        words = " ".join(rng.choice(["cat", "dog", "tree", "river", "moon"]) for _ in range(rng.randint(1, 40)))
        positive = f"shared passage {n % shared_every}" if shared_every else f"passage {n} {words}"
        rows.append(Triple(f"query {n}", positive, (f"negative {(n * 7) % max(3, count // 3)}",)))
    return rows


@pytest.fixture(scope="module")
def encoders(tiny_model):
    """The tiny model read at the given number of tokens per text."""
    return lambda max_length: encoder_at(tiny_model, max_length)


def test_every_triple_once_per_epoch_and_batches_change_with_epoch(encoders):
    data = tokenize_triples(varied_triples(203), encoders(64))
    first = epoch_batches(data, 8, seed=1, epoch=0)
    for epoch in (0, 1, 2):
        batches = epoch_batches(data, 8, seed=1, epoch=epoch)
        assert sorted(i for b in batches for i in b) == list(range(203))
        assert sorted(len(b) for b in batches) == [3] + [8] * 25  # ceil(203 / 8) = 26 batches, one of 203 - 200
    assert epoch_batches(data, 8, seed=1, epoch=0) == first  # a pure function of (seed, epoch)
    assert epoch_batches(data, 8, seed=1, epoch=1) != first


@pytest.mark.parametrize("group_by_length", [True, False])
def test_repeated_passages_do_not_shrink_batches(encoders, group_by_length):
    """Each positive is used 4 times and negatives repeat: still full batches, ceil(n / size) of them."""
    data = tokenize_triples(varied_triples(120, shared_every=30), encoders(64))
    for epoch in (0, 1):
        batches = epoch_batches(data, 16, seed=0, epoch=epoch, group_by_length=group_by_length)
        assert sorted(i for b in batches for i in b) == list(range(120))
        assert sorted(len(b) for b in batches) == [8] + [16] * 7


def test_the_sample_corpus_gives_full_batches_of_64(tmp_path, encoders):
    """data/sample's popular passages used to defer triples: batch 64 gave a median of 16 triples, and batches of 1."""
    from ragtrain.commands.prepare import prepare
    from ragtrain.config.prepare import PrepareConfig

    sample = Path(__file__).resolve().parents[1] / "data" / "sample"
    prepare(PrepareConfig(inputs=(sample,), output_dir=tmp_path / "prepared"))
    data = tokenize_triples(load_triples(tmp_path / "prepared" / "train.jsonl"), encoders(64))
    passages = [p for i in range(len(data)) for p in (data.positive_texts[i], *data.negative_texts[i])]
    assert len(set(passages)) < len(passages)  # passages do repeat across triples
    sizes = [len(b) for b in epoch_batches(data, 64, seed=42, epoch=0)]
    assert len(sizes) == -(-len(data) // 64) and sorted(sizes)[1:] == [64] * (len(sizes) - 1)
    assert sum(sizes) == len(data)


def test_false_negative_mask_by_hand(encoders):
    """Candidates equal (as token ids) to a query's positive, or to the positive of another triple asking the
    same query, are masked for that query; its own column never is. Whitespace and case variants match."""
    triples = [
        Triple("cat query", "a cat sat", ("a dog ran", "fish swim")),  # 0
        Triple("moon query", "A  cat sat", ("a cat sat",)),  # 1: the same passage as 0's (case, spaces); its negative too
        Triple("cat query", "the tree", ("the moon",)),  # 2: asks 0's query: 0's and 2's positives are both known
        Triple("sun query", "the sun", ("the tree",)),  # 3: its negative is 2's positive
    ]
    data = tokenize_triples(triples, encoders(32))
    assert data.positives[0] == data.positives[1] and data.positive_texts[0] != data.positive_texts[1]
    mask = false_negative_mask(data, [0, 1, 2, 3])
    # columns: positives 0-3, then negatives "a dog ran" 4, "fish swim" 5, "a cat sat" 6, "the moon" 7, "the tree" 8
    expected = torch.zeros(4, 9, dtype=torch.bool)
    expected[0, [1, 2, 6, 8]] = True  # 0's passage again (col 1, col 6); 2's positive and its copy (col 2, col 8)
    expected[1, [0, 6]] = True  # its own passage as 0's positive and as its own negative
    expected[2, [0, 1, 6, 8]] = True  # 0's positive (same query), its copies, and its own positive as 3's negative
    assert torch.equal(mask, expected)
    assert not mask.diagonal().any()
    assert torch.equal(false_negative_mask(data, [3, 0]), torch.zeros(2, 5, dtype=torch.bool))  # nothing repeats


def padding(data, batches) -> int:
    total = 0
    for batch in batches:
        queries, docs = collate(data, batch, 0)
        total += int((queries["attention_mask"] == 0).sum() + (docs["attention_mask"] == 0).sum())
    return total


def test_length_grouping_cuts_padding(encoders):
    data = tokenize_triples(varied_triples(400, seed=5), encoders(128))
    grouped = epoch_batches(data, 8, seed=0, epoch=0)
    shuffled = epoch_batches(data, 8, seed=0, epoch=0, group_by_length=False)
    assert padding(data, grouped) < 0.5 * padding(data, shuffled)


def test_collate_puts_positives_first_then_negatives(encoders):
    triples = [Triple("q one", "p one", ("n one", "n two")), Triple("q two", "p two longer text", ())]
    data = tokenize_triples(triples, encoders(32))
    queries, docs = collate(data, [0, 1], encoders(32).pad_id)
    assert queries["input_ids"].shape[0] == 2 and docs["input_ids"].shape[0] == 4
    assert docs["input_ids"][1, : len(data.positives[1])].tolist() == data.positives[1]
    assert docs["input_ids"][2, : len(data.negatives[0][0])].tolist() == data.negatives[0][0]
    assert docs["attention_mask"].sum(1).tolist() == [len(data.positives[0]), len(data.positives[1]),
                                                      *(len(n) for n in data.negatives[0])]


def test_micro_batches_split_the_global_batch():
    assert micro_batches(list(range(10)), 3) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert micro_batches([1, 2], 1) == [[1, 2]]


def test_a_negative_equal_to_the_positive_is_dropped(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"query": "q", "positive": "p", "negatives": ["p", "n", "n", " "]}) + "\n")
    assert load_triples(path) == [Triple("q", "p", ("n",))]


def test_old_json_array_format_is_read(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps([{"query": "q", "positive": "p", "negative": "n"}]))
    assert load_triples(path) == [Triple("q", "p", ("n",))]


@pytest.mark.parametrize("content, words", [
    ("", "no triples"),
    ("\n\n", "no triples"),
    ('{"query": "q", "positive": "p"}\n\n{"query": "q2"}\n', ":3: no 'positive'"),
    ('{"query": "q", "positive": "p"}\n[1, 2]\n', ":2: expected a JSON object"),
    ('{"query": "q", "positive": "p", "negatives": 3}\n', ":1: 'negatives' must be a list"),
    ('{"query": "q", "positive": "p"\n', ":1: not valid JSON"),
])
def test_bad_triples_are_user_errors_with_the_line(tmp_path, content, words):
    path = tmp_path / "t.jsonl"
    path.write_text(content)
    with pytest.raises(UserError, match=words.replace("[", r"\[")):
        load_triples(path)


def test_triples_of_a_single_distinct_passage_are_refused(encoders):
    same = tokenize_triples([Triple("q1", "the cat", ()), Triple("q2", "The  Cat", ("the cat",))], encoders(32))
    with pytest.raises(UserError, match="t.jsonl holds a single distinct passage .at --max-seq-length 32."):
        require_distinct_passages(same, Path("t.jsonl"))
    require_distinct_passages(tokenize_triples([Triple("q", "the cat", ("a dog",))], encoders(32)), Path("t"))
