"""Triples on disk, the length-grouped sampler with no repeated passage, and collation."""

from __future__ import annotations

import json
import random

import pytest
from transformers import AutoTokenizer

from ragtrain.data import Triple, collate, epoch_batches, load_triples, micro_batches, tokenize_triples
from ragtrain.errors import UserError


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
def tokenizer(tiny_model):
    return AutoTokenizer.from_pretrained(tiny_model)


def test_every_triple_once_per_epoch_and_batches_change_with_epoch(tokenizer):
    data = tokenize_triples(varied_triples(203), tokenizer, 64)
    first = epoch_batches(data, 8, seed=1, epoch=0)
    for epoch in (0, 1, 2):
        batches = epoch_batches(data, 8, seed=1, epoch=epoch)
        assert sorted(i for b in batches for i in b) == list(range(203))
        assert all(1 <= len(b) <= 8 for b in batches)
    assert epoch_batches(data, 8, seed=1, epoch=0) == first  # a pure function of (seed, epoch)
    assert epoch_batches(data, 8, seed=1, epoch=1) != first


def test_no_passage_twice_in_a_batch(tokenizer):
    data = tokenize_triples(varied_triples(120, shared_every=30), tokenizer, 64)  # each positive used 4 times
    batches = epoch_batches(data, 16, seed=0, epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(120))
    for batch in batches:
        passages = [data.positive_texts[i] for i in batch] + [n for i in batch for n in data.negative_texts[i]]
        assert len(passages) == len(set(passages))


def padding(data, batches) -> int:
    total = 0
    for batch in batches:
        queries, docs = collate(data, batch, 0)
        total += int((queries["attention_mask"] == 0).sum() + (docs["attention_mask"] == 0).sum())
    return total


def test_length_grouping_cuts_padding(tokenizer):
    data = tokenize_triples(varied_triples(400, seed=5), tokenizer, 128)
    grouped = epoch_batches(data, 8, seed=0, epoch=0)
    shuffled = epoch_batches(data, 8, seed=0, epoch=0, group_by_length=False)
    assert padding(data, grouped) < 0.5 * padding(data, shuffled)


def test_collate_puts_positives_first_then_negatives(tokenizer):
    triples = [Triple("q one", "p one", ("n one", "n two")), Triple("q two", "p two longer text", ())]
    data = tokenize_triples(triples, tokenizer, 32)
    queries, docs = collate(data, [0, 1], tokenizer.pad_token_id)
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
