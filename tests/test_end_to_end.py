"""All three commands in sequence through the installed entry point, on tiny data."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # starts a process for each command


def run(*args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "ragtrain", *args], capture_output=True, text=True, env=env)


def test_prepare_train_evaluate_in_sequence(tmp_path, docs_dir, tiny_model):
    data, run_dir, results = tmp_path / "data", tmp_path / "run", tmp_path / "results.json"
    out = run("prepare-data", str(docs_dir), "--output-dir", str(data), "--max-words", "30", "--overlap", "4",
              "--val-fraction", "0.2", "--test-fraction", "0.2")
    assert out.returncode == 0, out.stderr
    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["counts"]["train_triples"] > 0
    out = run("train", "--train-data", str(data / "train.jsonl"), "--val-data", str(data / "val.jsonl"),
              "--eval-data", str(data / "eval"), "--model", str(tiny_model), "--output-dir", str(run_dir),
              "--batch-size", "4", "--max-seq-length", "32", "--epochs", "2")
    assert out.returncode == 0, out.stderr
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    validations = [row for row in logged if "ndcg@10" in row]
    assert validations[0]["step"] == 0 and all("val_loss" in row for row in validations)
    # the run directory itself, as the quickstart passes it: its best/ (validation ran), not its config.json
    out = run("evaluate", str(tiny_model), str(run_dir), "--eval-data", str(data / "eval"), "--split", "val",
              "--k", "1,5,10", "--max-seq-length", "32", "--batch-size", "64", "--output", str(results))
    assert out.returncode == 0, out.stderr
    metrics = json.loads(results.read_text())["models"]
    assert set(metrics) == {str(tiny_model), str(run_dir)}
    assert metrics[str(run_dir)]["resolved"] == str(run_dir / "best")
    # evaluate measures what train's validation measured: the base model at step 0, best/ at its best step
    best = max(validations, key=lambda row: row["ndcg@10"])  # the first of equal maxima, as train keeps it
    for model, row in ((str(tiny_model), validations[0]), (str(run_dir), best)):
        for name in ("ndcg@10", "recall@10"):
            assert metrics[model]["metrics"][name] == pytest.approx(row[name], abs=1e-9), (model, name)
