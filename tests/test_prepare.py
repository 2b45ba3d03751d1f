"""prepare-data end to end on small inputs: outputs, determinism, honest splits, labelled modes, user errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from ragtrain.cli import app
from ragtrain.config import PrepareConfig
from ragtrain.errors import UserError
from ragtrain.prepare import prepare

from tests.conftest import SHARED_DATA, user_error

runner = CliRunner()


def config(inputs, out: Path, **options) -> PrepareConfig:
    options = {"max_words": 30, "overlap": 4, "val_fraction": 0.2, "test_fraction": 0.2,
               "negative_range": (1, 50)} | options
    return PrepareConfig(tuple(inputs), out, **options)


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def qrels(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text().splitlines()[1:]]


def all_bytes(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_outputs_and_manifest(tmp_path, docs_dir):
    summary = prepare(config([docs_dir], tmp_path / "out"))
    out = tmp_path / "out"
    assert sorted(all_bytes(out)) == ["eval/corpus.jsonl", "eval/qrels/test.tsv", "eval/qrels/val.tsv",
                                      "eval/queries.jsonl", "manifest.json", "train.jsonl", "val.jsonl"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["inputs"] == [str(docs_dir)] and manifest["options"]["seed"] == 42
    assert manifest["counts"] == dict(sorted(summary.counts.items()))
    assert set(manifest["sha256"]) == set(all_bytes(out)) - {"manifest.json"}
    assert summary.counts["train_triples"] == len(jsonl(out / "train.jsonl")) > 0
    assert sum(summary.counts[f"queries_{s}"] for s in ("cloze", "crop", "heading")) > 0


def test_same_seed_same_bytes_other_seed_other_split(tmp_path, docs_dir):
    prepare(config([docs_dir], tmp_path / "a"))
    prepare(config([docs_dir], tmp_path / "b"))
    prepare(config([docs_dir], tmp_path / "c", seed=7))
    assert all_bytes(tmp_path / "a") == all_bytes(tmp_path / "b")
    assert all_bytes(tmp_path / "a")["train.jsonl"] != all_bytes(tmp_path / "c")["train.jsonl"]


def test_no_document_on_two_sides_and_no_negative_equal_to_its_positive(tmp_path, docs_dir):
    out = tmp_path / "out"
    prepare(config([docs_dir], out, negatives=3))
    corpus = {row["_id"]: row["text"] for row in jsonl(out / "eval" / "corpus.jsonl")}
    doc_of = {passage_id: passage_id.rsplit("#", 1)[0] for passage_id in corpus}
    held_out = {doc_of[d] for split in ("val", "test") for _, d, _ in qrels(out / "eval" / "qrels" / f"{split}.tsv")}
    val_docs = {doc_of[d] for _, d, _ in qrels(out / "eval" / "qrels" / "val.tsv")}
    test_docs = {doc_of[d] for _, d, _ in qrels(out / "eval" / "qrels" / "test.tsv")}
    assert held_out and not val_docs & test_docs
    held_out_texts = {text for pid, text in corpus.items() if doc_of[pid] in held_out}
    for row in jsonl(out / "train.jsonl"):
        assert row["positive"] not in row["negatives"]
        assert not set(row["negatives"]) & held_out_texts  # mined inside the train documents only
    assert len(corpus) == summary_passages(out)  # every passage, of every split, is searchable


def summary_passages(out: Path) -> int:
    return json.loads((out / "manifest.json").read_text())["counts"]["passages"]


def test_held_out_cloze_query_is_not_verbatim_in_its_passage(tmp_path, docs_dir):
    out = tmp_path / "out"
    prepare(config([docs_dir], out, query_strategy="cloze"))
    corpus = {row["_id"]: row["text"] for row in jsonl(out / "eval" / "corpus.jsonl")}
    queries = {row["_id"]: row["text"] for row in jsonl(out / "eval" / "queries.jsonl")}
    judged = qrels(out / "eval" / "qrels" / "test.tsv")
    assert judged and all(queries[q] not in corpus[d] for q, d, _ in judged)


def test_pairs_mode_keeps_given_negatives_and_fills_with_mined_ones(tmp_path):
    topics = ["bread oven yeast", "planet orbit star", "river fish water", "cache memory code", "bike chain wheel"]
    rows = [{"query": f"{t} question {i}", "positive": f"{t} answer number {i} with some words",
             **({"negatives": [f"given negative {i}"]} if i % 2 else {})} for i in range(20) for t in topics[i % 5:i % 5 + 1]]
    rows.append({"query": "two positives", "positives": ["bread oven yeast answer number 0 with some words", "extra"]})
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    prepare(config([], out, pairs=pairs, negatives=2))
    train = jsonl(out / "train.jsonl")
    for row in train:
        assert row["positive"] not in row["negatives"] and len(row["negatives"]) <= 2
        number = row["query"].rsplit(" ", 1)[-1]
        if number.isdigit() and int(number) % 2:
            assert row["negatives"][0] == f"given negative {number}"
    corpus = {r["_id"]: r["text"] for r in jsonl(out / "eval" / "corpus.jsonl")}
    assert "extra" in corpus.values()
    val_test_positives = {corpus[d] for s in ("val", "test") for _, d, _ in qrels(out / "eval" / "qrels" / f"{s}.tsv")}
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
    prepare(config([], out, beir=beir, negatives=2))
    assert (out / "eval" / "corpus.jsonl").read_text() == (beir / "corpus.jsonl").read_text()
    assert (out / "eval" / "qrels" / "test.tsv").read_text() == (beir / "qrels" / "test.tsv").read_text()
    val_queries = {q for q, _, _ in qrels(out / "eval" / "qrels" / "val.tsv")}
    if with_dev:
        assert (out / "eval" / "qrels" / "dev.tsv").read_text() == (beir / "qrels" / "dev.tsv").read_text()
        assert val_queries == {f"q{i}" for i in range(20, 25)}
    else:
        assert val_queries and val_queries < {f"q{i}" for i in range(20)}
    train = jsonl(out / "train.jsonl")
    eval_answers = {f"Doc {i} " for i in range(20 if with_dev else 25, 30)}
    assert len(train) + (0 if with_dev else len(val_queries)) == 20
    for row in train:
        assert row["positive"] not in row["negatives"]
        assert not any(n.startswith(a) for n in row["negatives"] for a in eval_answers)


@pytest.mark.skipif(not (SHARED_DATA / "scifact").is_dir(), reason="shared SciFact data absent")
def test_beir_scifact_train_queries_make_triples(tmp_path):
    summary = prepare(config([], tmp_path / "out", beir=SHARED_DATA / "scifact", negative_range=(10, 100)))
    assert summary.counts["train_triples"] >= 649 and summary.counts["eval_queries_dev"] == 160


def test_user_errors_are_one_line_and_write_nothing(tmp_path, docs_dir):
    out = tmp_path / "out"
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "blank.md").write_text("\n\n")
    (tmp_path / "rows.jsonl").write_text('{"body": "text"}\n')
    (tmp_path / "two").mkdir()
    for n in range(2):
        (tmp_path / "two" / f"{n}.md").write_text(f"Document number {n}. It has two sentences here.")
    cases = [
        ([str(tmp_path / "missing")], "not found"),
        ([str(tmp_path / "empty")], "no usable documents"),
        ([str(tmp_path / "rows.jsonl"), "--text-field", "text"], "--text-field"),
        ([str(docs_dir), "--val-fraction", "0.5", "--test-fraction", "0.5"], "no training data"),
        ([str(tmp_path / "two")], "too few"),
        ([str(docs_dir), "--negative-range", "ten"], "--negative-range"),
        ([str(docs_dir), "--miner", "dense"], "--model"),
        ([str(docs_dir), "--query-strategy", "magic"], "--query-strategy"),
    ]
    for args, words in cases:
        assert words in user_error(["prepare-data", *args, "--output-dir", str(out)])
        assert not out.exists()
        assert not list(tmp_path.glob(".out*"))  # no temporary folder left behind


def test_non_empty_output_needs_overwrite(tmp_path, docs_dir):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert "--overwrite" in user_error(["prepare-data", str(docs_dir), "--output-dir", str(out)])
    # --overwrite replaces only a prepare-data output: a folder of the user's own is refused, and kept
    assert "not a prepare-data output" in user_error(["prepare-data", str(docs_dir), "--output-dir", str(out), "--overwrite"])
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"
    (out / "keep.txt").unlink()
    args = ["prepare-data", str(docs_dir), "--output-dir", str(out), "--val-fraction", "0.2", "--test-fraction", "0.2"]
    assert runner.invoke(app, args).exit_code == 0
    first = all_bytes(out)
    result = runner.invoke(app, [*args, "--overwrite", "--seed", "7"])
    assert result.exit_code == 0, result.output
    assert all_bytes(out) != first and (out / "train.jsonl").is_file()
    assert "train triples" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs", "out"]  # the old copy is gone, no temporaries


pair_texts = st.sampled_from([f"passage {w} about {x}" for w in ("bread", "orbit", "river", "cache", "chain")
                              for x in ("ovens", "stars", "fish", "memory")])


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
            summary = prepare(config([], out, pairs=pairs, negatives=2, seed=seed, val_fraction=val, test_fraction=test))
        except UserError as exc:
            assert "too few" in str(exc)  # queries and passages shared so widely that no three groups remain
            return
        counts = summary.counts
        train = jsonl(out / "train.jsonl")
        corpus = {r["_id"]: r["text"] for r in jsonl(out / "eval" / "corpus.jsonl")}
        eval_queries = {r["_id"]: r["text"] for r in jsonl(out / "eval" / "queries.jsonl")}
        held_out = {s: [(eval_queries[q], corpus[d]) for q, d, _ in qrels(out / "eval" / "qrels" / f"{s}.tsv")]
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
    from ragtrain.evaldata import load_eval_data

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
    assert "corpus duplicate ids" in result.output  # the summary table says what was dropped
    corpus = jsonl(out / "eval" / "corpus.jsonl")
    assert len(corpus) == 40 == counts["documents"] and corpus[0]["text"] == "bread oven yeast text 0"
    train_queries = {r["query"] for r in jsonl(out / "train.jsonl")}
    assert "a second q0" not in train_queries and "bread oven yeast query 0" in train_queries | {
        r["text"] for r in jsonl(out / "eval" / "queries.jsonl")}
    assert sorted(p.name for p in (out / "eval" / "qrels").iterdir()) == ["test.tsv", "val.tsv"]
    for split in ("test", "val"):
        data = load_eval_data(out / "eval", split)  # raises on anything evaluate would refuse
        assert data.dropped == {} and all(text.strip() for text in data.query_texts)
    assert len(jsonl(out / "train.jsonl")) + counts["eval_queries_val"] == 20  # q0..q19, one positive each


def test_an_empty_beir_corpus_is_named_as_such(tmp_path):
    beir = training_beir(tmp_path / "beir", with_dev=False)
    (beir / "corpus.jsonl").write_text("")
    assert "holds no documents" in user_error(["prepare-data", "--beir", str(beir), "--output-dir", str(tmp_path / "out")])


def test_no_empty_qrels_file_is_written(tmp_path, docs_dir):
    out = tmp_path / "out"
    prepare(config([docs_dir], out, val_fraction=0.0))
    assert sorted(p.name for p in (out / "eval" / "qrels").iterdir()) == ["test.tsv"]
