"""evaluate(): each model (BM25, a model, run or checkpoint directory) ranked, scored and reported; its options
and user errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ragtrain.cli import app
from ragtrain.commands.evaluate import evaluate
from ragtrain.data.evaldata import load_eval_data
from ragtrain.model.loading import resolve_model_dir
from tests.conftest import DOCS, QUERIES, evaluate_config, quiet_console, user_error, write_beir_folder

runner = CliRunner()


@pytest.mark.parametrize("args, word", [(["--k", "0,5"], "--k"), (["--batch-size", "0"], "--batch-size"),
                                        (["--device", "tpu"], "--device")])
def test_bad_options_are_refused(beir, args, word):
    assert word in user_error(["evaluate", "bm25", "--eval-data", str(beir), *args])


def test_same_model_twice_is_refused(beir):
    assert "twice" in user_error(["evaluate", "bm25", "bm25", "--eval-data", str(beir)])


def test_unloadable_model_is_one_line(beir, tmp_path):
    assert "cannot load model" in user_error(["evaluate", "no-such-model-anywhere", "--eval-data", str(beir),
                                               "--cache-dir", str(tmp_path / "c")])
    assert "not found" in user_error(["evaluate", str(tmp_path / "nope"), "--eval-data", str(beir),
                                       "--cache-dir", str(tmp_path / "c")])


def test_bm25_baseline_finds_the_matching_documents(beir, tmp_path):
    results = evaluate(evaluate_config(beir, tmp_path, "bm25"), console=quiet_console())
    assert results["models"]["bm25"]["metrics"]["recall@1"] == 1.0
    assert results["models"]["bm25"]["metrics"]["precision@10"] == pytest.approx(1 / 10)  # 5 docs, k = 10
    assert set(results["models"]["bm25"]["per_query"]) == {"q1", "q2", "q3"}
    assert results["data"]["excluded_queries"] == 1


def test_no_cache_writes_nothing(beir, tmp_path, tiny_model):
    result = runner.invoke(app, ["evaluate", str(tiny_model), "--eval-data", str(beir), "--no-cache",
                                 "--cache-dir", str(tmp_path / "cache"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "cache").exists()


def test_run_and_checkpoint_directories_resolve_to_the_model(tmp_path, tiny_model):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text('{"epochs": 1}')  # train writes its options there, beside final/ and best/
    for sub in ("final", "checkpoints/step-5/model"):
        (run / sub).mkdir(parents=True)
        (run / sub / "config.json").write_text("{}")
    assert resolve_model_dir(str(run)) == str(run / "final")  # no validation: no best/
    (run / "best").mkdir()
    (run / "best" / "config.json").write_text("{}")
    assert resolve_model_dir(str(run)) == str(run / "best")  # chosen by validation, never worse than the base
    assert resolve_model_dir(str(run / "checkpoints" / "step-5")) == str(run / "checkpoints/step-5/model")
    assert resolve_model_dir(str(tiny_model)) == str(tiny_model)


def test_trec_run_file_and_json_output(beir, tmp_path):
    out, run_file = tmp_path / "results.json", tmp_path / "run.trec"
    result = runner.invoke(app, ["evaluate", "bm25", "--eval-data", str(beir), "--k", "1,3", "--output", str(out),
                                 "--run-file", str(run_file)])
    assert result.exit_code == 0, result.output
    lines = [line.split() for line in run_file.read_text().splitlines()]
    assert len(lines) == 3 * 3 and all(len(parts) == 6 and parts[1] == "Q0" and parts[5] == "bm25" for parts in lines)
    q1 = [parts for parts in lines if parts[0] == "q1"]
    assert [int(p[3]) for p in q1] == [1, 2, 3] and q1[0][2] == "d1"
    assert float(q1[0][4]) >= float(q1[1][4]) >= float(q1[2][4])
    saved = json.loads(out.read_text())
    assert saved["settings"]["k_values"] == [1, 3] and "timings" in saved["models"]["bm25"]
    assert saved["models"]["bm25"]["per_query"]["q1"]["recall@1"] == 1.0


@pytest.mark.parametrize("args, word", [(["--precision", "fp8"], "--precision"),
                                        (["--precision", "fp16", "--device", "cpu"], "fp16")])
def test_bad_precision_is_refused_before_loading(beir, tmp_path, args, word):
    assert word in user_error(["evaluate", str(tmp_path / "no-model"), "--eval-data", str(beir), *args])


def test_repeated_ids_keep_the_first_and_are_counted_and_reported(tmp_path):
    beir = write_beir_folder(tmp_path / "eval", [("q1", "d1", 1), ("q2", "d2", 1), ("q1", "d1", 0)])
    with (beir / "corpus.jsonl").open("a") as handle:  # a second d1 whose text would match q2
        handle.write(json.dumps({"_id": "d1", "title": "", "text": "bread oven bread oven"}) + "\n")
    with (beir / "queries.jsonl").open("a") as handle:
        handle.write(json.dumps({"_id": "q2", "text": "cat tree"}) + "\n")
    data = load_eval_data(beir, "test")
    assert data.dropped == {"corpus_duplicate_ids": 1, "qrels_duplicate_judgements": 1, "queries_duplicate_ids": 1}
    assert data.corpus_ids == list(DOCS) and data.corpus_texts[0] == DOCS["d1"]
    assert data.query_texts == [QUERIES["q1"], QUERIES["q2"]] and data.qrels["q1"] == {"d1": 1}
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["evaluate", "bm25", "--eval-data", str(beir), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "warning" in result.output and "1 corpus duplicate ids" in result.output
    assert json.loads(out.read_text())["data"]["dropped_duplicates"] == data.dropped
    assert json.loads(out.read_text())["models"]["bm25"]["metrics"]["recall@1"] == 1.0


def test_bm25_over_a_corpus_without_an_indexable_word_scores_everything_zero(tmp_path):
    beir = write_beir_folder(tmp_path / "eval", [("q1", "d1", 1), ("q2", "d2", 1)])
    (beir / "corpus.jsonl").write_text("".join(json.dumps({"_id": d, "text": t}) + "\n"
                                               for d, t in [("d1", ""), ("d2", "the of a"), ("d3", "")]))
    results = evaluate(evaluate_config(beir, tmp_path, "bm25"), console=quiet_console())["models"]["bm25"]
    assert results["per_query"]["q1"]["recall@1"] == 1.0 and results["per_query"]["q2"]["recall@1"] == 0.0  # corpus order
    assert results["metrics"]["recall@10"] == 1.0


def test_a_run_or_checkpoint_without_a_model_is_named_as_such(tmp_path, beir):
    run = tmp_path / "run"
    (run / "checkpoints" / "step-3").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"train_data": "t.jsonl", "epochs": 1}))  # train's options
    assert "no saved model yet" in user_error(["evaluate", str(run), "--eval-data", str(beir)])
    assert "holds no model (no config.json)" in user_error(["evaluate", str(run / "checkpoints" / "step-3"),
                                                            "--eval-data", str(beir)])


