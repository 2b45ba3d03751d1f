"""Labelled sources: pairs (one query per text, groups that never straddle splits, given negatives kept and mined
ones added) and BEIR folders (the corpus kept, every other qrels split kept for evaluation, what evaluate would
refuse dropped and counted)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from ragtrain.cli import app
from ragtrain.commands.prepare import prepare
from ragtrain.data.labelled import merge_by_query, triples_for
from ragtrain.data.pairfiles import read_pairs
from ragtrain.errors import UserError
from ragtrain.retrieval.negatives import MiningOptions
from tests.conftest import SHARED_DATA, jsonl_rows, prepare_config, qrels_rows, user_error

runner = CliRunner()
pair_texts = st.sampled_from([f"passage {w} about {x}" for w in ("bread", "orbit", "river", "cache", "chain")
                              for x in ("ovens", "stars", "fish", "memory")])


def test_pairs_mode_keeps_given_negatives_and_fills_with_mined_ones(tmp_path):
    topics = ["bread oven yeast", "planet orbit star", "river fish water", "cache memory code", "bike chain wheel"]
    rows = [{"query": f"{t} question {i}", "positive": f"{t} answer number {i} with some words",
             **({"negatives": [f"given negative {i}"]} if i % 2 else {})} for i in range(20) for t in topics[i % 5:i % 5 + 1]]
    rows.append({"query": "two positives", "positives": ["bread oven yeast answer number 0 with some words", "extra"]})
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    prepare(prepare_config([], out, pairs=pairs, negatives=2))
    train = jsonl_rows(out / "train.jsonl")
    for row in train:
        assert row["positive"] not in row["negatives"] and len(row["negatives"]) <= 2
        number = row["query"].rsplit(" ", 1)[-1]
        if number.isdigit() and int(number) % 2:
            assert row["negatives"][0] == f"given negative {number}"
    corpus = {r["_id"]: r["text"] for r in jsonl_rows(out / "eval" / "corpus.jsonl")}
    assert "extra" in corpus.values()
    val_test_positives = {corpus[d] for s in ("val", "test") for _, d, _ in qrels_rows(out / "eval" / "qrels" / f"{s}.tsv")}
    assert not val_test_positives & {r["positive"] for r in train}


def training_beir(directory: Path, with_dev: bool) -> Path:
    topics = ["bread oven yeast", "planet orbit star", "river fish water", "cache memory code", "bike chain wheel"]
    (directory / "qrels").mkdir(parents=True)
    corpus = [{"_id": f"d{i}", "title": f"Doc {i}", "text": f"{topics[i % 5]} text {i}"} for i in range(40)]
    queries = [{"_id": f"q{i}", "text": f"{topics[i % 5]} query {i}"} for i in range(30)]
    (directory / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus))
    (directory / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in queries))
    head = "query-id\tcorpus-id\tscore\n"
    (directory / "qrels" / "train.tsv").write_text(head + "".join(f"q{i}\td{i}\t1\n" for i in range(20)))
    (directory / "qrels" / "test.tsv").write_text(head + "".join(f"q{i}\td{i}\t1\n" for i in range(25, 30)))
    if with_dev:
        (directory / "qrels" / "dev.tsv").write_text(head + "".join(f"q{i}\td{i}\t1\n" for i in range(20, 25)))
    return directory


@pytest.mark.parametrize("with_dev", [True, False])
def test_beir_mode_keeps_the_corpus_and_splits(tmp_path, with_dev):
    beir = training_beir(tmp_path / "beir", with_dev)
    out = tmp_path / "out"
    prepare(prepare_config([], out, beir=beir, negatives=2))
    assert (out / "eval" / "corpus.jsonl").read_text() == (beir / "corpus.jsonl").read_text()
    assert (out / "eval" / "qrels" / "test.tsv").read_text() == (beir / "qrels" / "test.tsv").read_text()
    val_queries = {q for q, _, _ in qrels_rows(out / "eval" / "qrels" / "val.tsv")}
    if with_dev:
        assert (out / "eval" / "qrels" / "dev.tsv").read_text() == (beir / "qrels" / "dev.tsv").read_text()
        assert val_queries == {f"q{i}" for i in range(20, 25)}
    else:
        assert val_queries and val_queries < {f"q{i}" for i in range(20)}
    train = jsonl_rows(out / "train.jsonl")
    eval_answers = {f"Doc {i} " for i in range(20 if with_dev else 25, 30)}
    assert len(train) + (0 if with_dev else len(val_queries)) == 20
    for row in train:
        assert row["positive"] not in row["negatives"]
        assert not any(n.startswith(a) for n in row["negatives"] for a in eval_answers)


def test_max_triples_caps_beir_triples_and_dev_in_the_same_share(tmp_path):
    beir = training_beir(tmp_path / "beir", with_dev=True)  # 20 train queries, 5 dev queries, one positive each
    capped = prepare(prepare_config([], tmp_path / "out", beir=beir, negatives=2, max_triples=8)).counts
    assert (capped["train_triples"], capped["val_triples"]) == (8, 2)  # 8 of 20, and 5 * 8 / 20
    assert capped["triples_left_out_by_max_triples_train"] == 12 and capped["triples_left_out_by_max_triples_val"] == 3
    train = jsonl_rows(tmp_path / "out" / "train.jsonl")
    assert len({row["positive"] for row in train}) == 8 and all(len(row["negatives"]) == 2 for row in train)


@pytest.mark.skipif(not (SHARED_DATA / "scifact").is_dir(), reason="shared SciFact data absent")
def test_beir_scifact_train_queries_make_triples(tmp_path):
    summary = prepare(prepare_config([], tmp_path / "out", beir=SHARED_DATA / "scifact", negative_range=(10, 100)))
    assert summary.counts["train_triples"] >= 649 and summary.counts["eval_queries_dev"] == 160


@settings(max_examples=40, deadline=None)
@given(rows=st.lists(st.tuples(st.sampled_from([f"question {n}" for n in range(14)]),
                               st.lists(pair_texts, min_size=1, max_size=2), st.lists(pair_texts, max_size=3)),
                     min_size=3, max_size=32),
       seed=st.integers(0, 2**32 - 1), val=st.sampled_from([0.1, 0.25]), test=st.sampled_from([0.1, 0.25]))
def test_pairs_never_leak_a_held_out_query_or_passage_into_train(rows, seed, val, test):
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        pairs, out = Path(tmp) / "pairs.jsonl", Path(tmp) / "out"
        pairs.write_text("".join(json.dumps({"query": q, "positives": pos, "negatives": neg}) + "\n" for q, pos, neg in rows))
        try:
            summary = prepare(prepare_config([], out, pairs=pairs, negatives=2, seed=seed, val_fraction=val, test_fraction=test))
        except UserError as exc:
            assert "too few" in str(exc)  # queries and passages shared so widely that no three groups remain
            return
        counts = summary.counts
        train = jsonl_rows(out / "train.jsonl")
        corpus = {r["_id"]: r["text"] for r in jsonl_rows(out / "eval" / "corpus.jsonl")}
        eval_queries = {r["_id"]: r["text"] for r in jsonl_rows(out / "eval" / "queries.jsonl")}
        held_out = {s: [(eval_queries[q], corpus[d]) for q, d, _ in qrels_rows(out / "eval" / "qrels" / f"{s}.tsv")]
                    for s in ("val", "test")}
        held_out_texts = {text for judged in held_out.values() for pair in judged for text in pair}
        train_texts = {text for r in train for text in (r["query"], r["positive"], *r["negatives"])}
        assert not held_out_texts & train_texts
        # counts add up: every distinct query is in exactly one split, one triple per (train query, positive)
        merged: dict[str, tuple[dict, dict]] = {}
        for q, pos, neg in rows:
            merged.setdefault(q, ({}, {}))[0].update(dict.fromkeys(pos))
            merged[q][1].update(dict.fromkeys(neg))
        assert counts["pairs"] == len(rows) and counts["pair_queries"] == len(merged)
        assert sum(counts[f"pair_queries_{s}"] for s in ("train", "val", "test")) == len(merged)
        for s in ("val", "test"):
            assert counts[f"eval_queries_{s}"] == counts[f"pair_queries_{s}"] == len({q for q, _ in held_out[s]})
            assert {(q, d) for q, d in held_out[s]} == {(q, d) for q in {q for q, _ in held_out[s]} for d in merged[q][0]}
        train_queries = {r["query"] for r in train}
        assert counts["train_triples"] == len(train) == sum(len(merged[q][0]) for q in train_queries)
        assert counts["pair_queries_train"] == len(train_queries)
        dropped = 0
        for row in train:  # the given negatives come first, less those that are held-out texts
            positives, negatives = merged[row["query"]]
            given = [n for n in negatives if n not in positives]
            kept = [n for n in given if n not in held_out_texts]
            assert row["negatives"][: len(kept)] == kept and row["positive"] not in row["negatives"]
            dropped += (len(given) - len(kept)) if row["positive"] == next(iter(positives)) else 0
        assert counts["given_negatives_dropped_train_other_split"] == dropped


def test_beir_output_is_what_evaluate_accepts_with_every_dropped_row_counted(tmp_path):
    from ragtrain.data.evaldata import load_eval_data

    beir = training_beir(tmp_path / "beir", with_dev=False)
    with (beir / "corpus.jsonl").open("a") as handle:  # a repeated id: the first row stays
        handle.write(json.dumps({"_id": "d0", "title": "Other", "text": "a second d0"}) + "\n")
    with (beir / "queries.jsonl").open("a") as handle:
        handle.write(json.dumps({"_id": "q0", "text": "a second q0"}) + "\n")
        handle.write(json.dumps({"_id": "q40", "text": None}) + "\n")
        handle.write(json.dumps({"_id": "q41", "text": ""}) + "\n")
    head = "query-id\tcorpus-id\tscore\n"
    with (beir / "qrels" / "train.tsv").open("a") as handle:
        handle.write("q1\td99\t1\nq40\td2\t1\nq77\td3\t1\nq2\td2\t1\n")  # unknown doc, no text, unknown query, repeat
    with (beir / "qrels" / "test.tsv").open("a") as handle:
        handle.write("q41\td26\t1\nq26\tnowhere\t1\n")
    (beir / "qrels" / "dev.tsv").write_text(head + "q20\tnowhere\t1\nq21\td21\t0\n")  # nothing relevant remains
    out = tmp_path / "out"
    result = runner.invoke(app, ["prepare-data", "--beir", str(beir), "--output-dir", str(out), "--negatives", "1",
                                 "--negative-range", "1-50", "--val-fraction", "0.2"])
    assert result.exit_code == 0, result.output
    counts = json.loads((out / "manifest.json").read_text())["counts"]
    assert {k: counts[k] for k in ("corpus_duplicate_ids", "queries_duplicate_ids", "qrels_duplicate_judgements",
                                   "qrels_dropped_unknown_document", "qrels_dropped_unknown_query",
                                   "qrels_dropped_query_without_text", "qrels_splits_dropped_no_relevant_judgement")} \
        == {"corpus_duplicate_ids": 1, "queries_duplicate_ids": 1, "qrels_duplicate_judgements": 1,
            "qrels_dropped_unknown_document": 3, "qrels_dropped_unknown_query": 1,
            "qrels_dropped_query_without_text": 2, "qrels_splits_dropped_no_relevant_judgement": 1}
    assert "corpus rows dropped: a repeated id" in result.output  # the summary table says what was dropped
    corpus = jsonl_rows(out / "eval" / "corpus.jsonl")
    assert len(corpus) == 40 == counts["documents"] and corpus[0]["text"] == "bread oven yeast text 0"
    train_queries = {r["query"] for r in jsonl_rows(out / "train.jsonl")}
    assert "a second q0" not in train_queries and "bread oven yeast query 0" in train_queries | {
        r["text"] for r in jsonl_rows(out / "eval" / "queries.jsonl")}
    assert sorted(p.name for p in (out / "eval" / "qrels").iterdir()) == ["test.tsv", "val.tsv"]
    for split in ("test", "val"):
        data = load_eval_data(out / "eval", split)  # raises on anything evaluate would refuse
        assert data.dropped == {} and all(text.strip() for text in data.query_texts)
    assert len(jsonl_rows(out / "train.jsonl")) + counts["eval_queries_val"] == 20  # q0..q19, one positive each


def test_an_empty_beir_corpus_is_named_as_such(tmp_path):
    beir = training_beir(tmp_path / "beir", with_dev=False)
    (beir / "corpus.jsonl").write_text("")
    assert "holds no documents" in user_error(["prepare-data", "--beir", str(beir), "--output-dir", str(tmp_path / "out")])


def test_pairs_must_name_a_query_and_a_positive_and_negatives_must_be_texts(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"query": "q1", "positives": ["p1", "p2"], "negatives": ["n", " "]}\n\n{"query": "q2", "positive": "p"}\n')
    assert read_pairs(path)[0] == [("q1", ["p1", "p2"], ["n"]), ("q2", ["p"], [])]  # blank negatives dropped
    for row, words in [({"query": "q"}, "has no positive column"),
                       ({"query": " ", "positive": "p"}, "row 1 has no query text in 'query'"),
                       ({"query": "q", "positive": "p", "negatives": 3}, "row 1: 'negatives' must be a text or a list")]:
        path.write_text(json.dumps(row) + "\n")
        with pytest.raises(UserError, match=words):
            read_pairs(path)


def test_pairs_with_one_query_are_one_query_with_every_answer():
    merged = merge_by_query([("q", ["a"], ["x"]), ("r", ["b"], []), ("q", ["c", "a"], ["a", "y"])])
    assert merged == [("q", ["a", "c"], ["x", "y"]), ("r", ["b"], [])]  # 'a' answers q: never its negative


def test_given_negatives_come_first_and_mined_ones_fill_up_to_the_number_asked():
    texts = ["bread oven yeast", "bread oven dough", "planet orbit star", "bread yeast sugar", "river fish water"]
    rows = list(triples_for([(0, 0)], ["bread oven"], [(0,)], {0: (4,)}, [0, 1, 2, 3, 4], texts,
                            [str(i) for i in range(5)], MiningOptions(num_negatives=2, rank_range=(1, 5), margin=10.0),
                            Counter()))
    assert len(rows) == 1 and rows[0]["positive"] == texts[0]
    assert rows[0]["negatives"][0] == texts[4] and len(rows[0]["negatives"]) == 2 and texts[0] not in rows[0]["negatives"]
