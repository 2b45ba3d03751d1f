"""All three commands in sequence through the installed entry point, on tiny data."""

from __future__ import annotations

import json
import os
import subprocess
import sys


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
              "--model", str(tiny_model), "--output-dir", str(run_dir), "--batch-size", "4", "--max-seq-length", "32",
              "--epochs", "2")
    assert out.returncode == 0, out.stderr
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("val_loss" in row for row in logged)
    # the run directory itself, as the quickstart passes it: its best/ (validation ran), not its config.json
    out = run("evaluate", str(tiny_model), str(run_dir), "--eval-data", str(data / "eval"),
              "--k", "1,5,10", "--output", str(results))
    assert out.returncode == 0, out.stderr
    metrics = json.loads(results.read_text())["models"]
    assert set(metrics) == {str(tiny_model), str(run_dir)}
    assert metrics[str(run_dir)]["resolved"] == str(run_dir / "best")
    assert all(0.0 <= v <= 1.0 for m in metrics.values() for v in m["metrics"].values())
