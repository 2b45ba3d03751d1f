"""The Python API: `from ragtrain import prepare_data, train, evaluate` runs each command on the config dataclass the
command line builds, and returns where the results went and what they measured; `import ragtrain` loads no torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ragtrain import PreparedData, TrainedRun, evaluate, prepare_data, train
from ragtrain.config.train import TrainConfig
from ragtrain.errors import UserError
from tests.conftest import evaluate_config, prepare_config, quiet_console

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # starts an interpreter
def test_importing_the_package_loads_neither_torch_nor_a_command():
    script = ("import sys, ragtrain\n"
              "loaded = [m for m in ('torch', 'transformers', 'ragtrain.commands', 'ragtrain.cli') if m in sys.modules]\n"
              "print(ragtrain.__version__, loaded)")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.split(" ", 1)[1].strip() == "[]"


@pytest.mark.slow
def test_prepare_train_evaluate_from_python(tmp_path, docs_dir, tiny_model, monkeypatch):
    monkeypatch.setattr("ragtrain.commands.evaluate.Console", lambda **_: quiet_console())
    data = prepare_data(prepare_config([docs_dir], tmp_path / "data"))
    assert isinstance(data, PreparedData)
    assert data.train_file == tmp_path / "data" / "train.jsonl" and data.train_file.is_file()
    assert (data.eval_dir / "corpus.jsonl").is_file() and data.val_file.is_file()
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert data.counts == manifest["counts"] and data.counts["train_triples"] > 0

    run = train(TrainConfig(train_data=data.train_file, eval_data=data.eval_dir, model=str(tiny_model),
                            output_dir=tmp_path / "run", batch_size=4, max_seq_length=32, device="cpu"))
    assert isinstance(run, TrainedRun)
    assert run.final == tmp_path / "run" / "final" and run.best == tmp_path / "run" / "best"
    assert [row["step"] for row in run.validation][0] == 0 and all("ndcg@10" in row for row in run.validation)

    results = evaluate(evaluate_config(data.eval_dir, tmp_path, "bm25", str(run.run_dir), split="test"))
    ndcg = results["models"][str(run.run_dir)]["metrics"]["ndcg@10"]
    assert 0.0 <= ndcg <= 1.0 and results["models"][str(run.run_dir)]["resolved"] == str(run.best)


def test_a_mistake_raises_the_one_line_the_command_line_prints(tmp_path):
    with pytest.raises(UserError, match="train file .* not found; run 'ragtrain prepare-data' first"):
        train(TrainConfig(train_data=tmp_path / "missing.jsonl", output_dir=tmp_path / "run"))
