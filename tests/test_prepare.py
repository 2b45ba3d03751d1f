"""prepare-data end to end on documents: outputs and manifest, determinism, honest splits, user errors."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from ragtrain.cli import app
from ragtrain.commands.prepare import prepare
from tests.conftest import file_bytes, jsonl_rows, prepare_config, qrels_rows, user_error

runner = CliRunner()


def test_outputs_and_manifest(tmp_path, docs_dir):
    summary = prepare(prepare_config([docs_dir], tmp_path / "out"))
    out = tmp_path / "out"
    assert sorted(file_bytes(out)) == ["eval/corpus.jsonl", "eval/qrels/test.tsv", "eval/qrels/val.tsv",
                                      "eval/queries.jsonl", "manifest.json", "train.jsonl", "val.jsonl"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["inputs"] == [str(docs_dir)] and manifest["options"]["seed"] == 42
    assert manifest["counts"] == dict(sorted(summary.counts.items()))
    assert set(manifest["sha256"]) == set(file_bytes(out)) - {"manifest.json"}
    assert summary.counts["train_triples"] == len(jsonl_rows(out / "train.jsonl")) > 0
    assert sum(summary.counts[f"queries_{s}"] for s in ("cloze", "crop", "heading")) > 0


def test_same_seed_same_bytes_other_seed_other_split(tmp_path, docs_dir):
    prepare(prepare_config([docs_dir], tmp_path / "a"))
    prepare(prepare_config([docs_dir], tmp_path / "b"))
    prepare(prepare_config([docs_dir], tmp_path / "c", seed=7))
    assert file_bytes(tmp_path / "a") == file_bytes(tmp_path / "b")
    assert file_bytes(tmp_path / "a")["train.jsonl"] != file_bytes(tmp_path / "c")["train.jsonl"]


def test_no_document_on_two_sides_and_no_negative_equal_to_its_positive(tmp_path, docs_dir):
    out = tmp_path / "out"
    prepare(prepare_config([docs_dir], out, negatives=3))
    corpus = {row["_id"]: row["text"] for row in jsonl_rows(out / "eval" / "corpus.jsonl")}
    doc_of = {passage_id: passage_id.rsplit("#", 1)[0] for passage_id in corpus}
    held_out = {doc_of[d] for split in ("val", "test") for _, d, _ in qrels_rows(out / "eval" / "qrels" / f"{split}.tsv")}
    val_docs = {doc_of[d] for _, d, _ in qrels_rows(out / "eval" / "qrels" / "val.tsv")}
    test_docs = {doc_of[d] for _, d, _ in qrels_rows(out / "eval" / "qrels" / "test.tsv")}
    assert held_out and not val_docs & test_docs
    held_out_texts = {text for pid, text in corpus.items() if doc_of[pid] in held_out}
    for row in jsonl_rows(out / "train.jsonl"):
        assert row["positive"] not in row["negatives"]
        assert not set(row["negatives"]) & held_out_texts  # mined inside the train documents only
    assert len(corpus) == summary_passages(out)  # every passage, of every split, is searchable


def summary_passages(out: Path) -> int:
    return json.loads((out / "manifest.json").read_text())["counts"]["passages"]


def test_held_out_cloze_query_is_not_verbatim_in_its_passage(tmp_path, docs_dir):
    out = tmp_path / "out"
    prepare(prepare_config([docs_dir], out, query_strategy="cloze"))
    corpus = {row["_id"]: row["text"] for row in jsonl_rows(out / "eval" / "corpus.jsonl")}
    queries = {row["_id"]: row["text"] for row in jsonl_rows(out / "eval" / "queries.jsonl")}
    judged = qrels_rows(out / "eval" / "qrels" / "test.tsv")
    assert judged and all(queries[q] not in corpus[d] for q, d, _ in judged)


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
    first = file_bytes(out)
    result = runner.invoke(app, [*args, "--overwrite", "--seed", "7"])
    assert result.exit_code == 0, result.output
    assert file_bytes(out) != first and (out / "train.jsonl").is_file()
    assert "training triples (train.jsonl)" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs", "out"]  # the old copy is gone, no temporaries


def test_no_empty_qrels_file_is_written(tmp_path, docs_dir):
    out = tmp_path / "out"
    prepare(prepare_config([docs_dir], out, val_fraction=0.0))
    assert sorted(p.name for p in (out / "eval" / "qrels").iterdir()) == ["test.tsv"]


def test_documents_are_capped_by_default_and_labelled_inputs_are_not(tmp_path):
    from ragtrain.config.prepare import LABEL_FREE_MAX_TRIPLES, PrepareConfig

    assert PrepareConfig((tmp_path,), tmp_path / "o").triples_cap == LABEL_FREE_MAX_TRIPLES == 800
    assert PrepareConfig((), tmp_path / "o", beir=tmp_path).triples_cap == 0
    assert PrepareConfig((), tmp_path / "o", pairs=tmp_path / "p.jsonl").triples_cap == 0
    assert PrepareConfig((tmp_path,), tmp_path / "o", max_triples=0).triples_cap == 0  # 0: no cap, as asked
    assert PrepareConfig((), tmp_path / "o", beir=tmp_path, max_triples=5).triples_cap == 5


def test_max_triples_keeps_a_seeded_sample_of_passages_and_the_same_evaluation_set(tmp_path, docs_dir):
    whole = prepare(prepare_config([docs_dir], tmp_path / "all")).counts
    small = prepare(prepare_config([docs_dir], tmp_path / "small", max_triples=6)).counts
    larger = prepare(prepare_config([docs_dir], tmp_path / "larger", max_triples=12)).counts
    assert (small["train_triples"], larger["train_triples"]) == (6, 12) and whole["train_triples"] > 12
    assert small["triples_left_out_by_max_triples_train"] == whole["train_triples"] - 6
    assert small["val_triples"] == max(1, round(whole["val_triples"] * 6 / whole["train_triples"]))
    rows = {name: jsonl_rows(tmp_path / name / "train.jsonl") for name in ("all", "small", "larger")}
    queries = [r["query"] for r in rows["all"]]
    for name in ("small", "larger"):  # a subset of the uncapped triples, in their order
        assert [queries.index(r["query"]) for r in rows[name]] == sorted(queries.index(r["query"]) for r in rows[name])
    pairs = {name: [(r["query"], r["positive"]) for r in rows[name]] for name in rows}
    assert set(pairs["small"]) <= set(pairs["larger"])  # a larger cap keeps a smaller one's passages and queries
    assert file_bytes(tmp_path / "small" / "eval") == file_bytes(tmp_path / "all" / "eval")  # evaluation: uncapped
