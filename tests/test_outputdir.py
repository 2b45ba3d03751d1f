"""--overwrite replaces only what ragtrain wrote, and an output that cannot be written is refused before any work:
each refusal is one line with exit code 2, and every file that was there is still there, byte for byte."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from ragtrain.cli import app
from ragtrain.commands.preflight import train_inputs
from ragtrain.config.train import TrainConfig
from ragtrain.errors import UserError
from ragtrain.files import atomic
from ragtrain.files.names import LOCK_NAME
from ragtrain.files.outputdir import check_folder_output, is_run_directory
from ragtrain.training.checkpoint import missing_files
from tests.conftest import file_bytes, user_error, write_documents, write_triples

runner = CliRunner()
PREPARE = ["--max-words", "30", "--overlap", "4", "--val-fraction", "0.2", "--test-fraction", "0.2"]


def refused(args: list[str], folder: Path, *words: str) -> str:
    """Run a command that must be refused: one line naming `words`, exit 2, nothing under `folder` changed."""
    before = file_bytes(folder)
    line = user_error(args)
    for word in words:
        assert word in line, line
    assert file_bytes(folder) == before
    return line


# ---- prepare-data

@pytest.mark.parametrize("where, words", [
    (".", "is the current directory"),
    ("..", "a parent of the current directory"),
    ("~", "is your home directory"),
    ("/", "the root of a file system"),
])
def test_prepare_refuses_to_replace_the_current_home_or_root_directory(tmp_path, monkeypatch, where, words):
    home, work = tmp_path / "home", tmp_path / "home" / "projects" / "work"
    docs = write_documents(work / "docs")
    (work / "notes.txt").write_text("mine")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    output = str(home) if where == "~" else where
    refused(["prepare-data", "docs", "-o", output, "--overwrite", *PREPARE], tmp_path, words)
    assert (work / "notes.txt").read_text() == "mine" and docs.is_dir()


def test_prepare_refuses_an_output_that_holds_or_is_inside_an_input(tmp_path):
    project = tmp_path / "project"
    docs = write_documents(project / "docs")
    pairs = project / "pairs.jsonl"
    pairs.write_text(json.dumps({"query": "q", "positive": "p"}) + "\n")
    beir = project / "beir"
    beir.mkdir()
    (beir / "corpus.jsonl").write_text(json.dumps({"_id": "d", "text": "t"}) + "\n")
    for inputs in ([str(docs)], ["--pairs", str(pairs)], ["--beir", str(beir)]):  # `prepare-data -o project --overwrite`
        refused(["prepare-data", *inputs, "-o", str(project), "--overwrite", *PREPARE], tmp_path, "holds the input")
    refused(["prepare-data", str(docs), "-o", str(docs / "prepared"), *PREPARE], tmp_path, "is inside the input")
    refused(["prepare-data", str(docs), "-o", str(docs), "--overwrite", *PREPARE], tmp_path, "is the input")


def test_prepare_overwrite_refuses_files_it_did_not_write(tmp_path, docs_dir):
    out = tmp_path / "out"
    assert runner.invoke(app, ["prepare-data", str(docs_dir), "-o", str(out), *PREPARE]).exit_code == 0
    (out / "eval" / "my-notes.md").write_text("mine")
    refused(["prepare-data", str(docs_dir), "-o", str(out), "--overwrite", *PREPARE], tmp_path,
            "holds eval/my-notes.md", "which prepare-data did not write")
    (out / "eval" / "my-notes.md").unlink()
    (out / "manifest.json").unlink()
    refused(["prepare-data", str(docs_dir), "-o", str(out), "--overwrite", *PREPARE], tmp_path,
            "is not a prepare-data output (no manifest.json)")


# ---- train

def train_args(triples: Path, model: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--train-data", str(triples), "--model", str(model), "-o", str(out), "--batch-size", "4",
            "--max-seq-length", "32", "--device", "cpu", *extra]


def test_train_overwrite_refuses_a_run_directory_that_holds_its_data(tmp_path, tiny_model):
    """The issue's case: `train -o DIR --overwrite` with the training data in DIR deleted the data."""
    data = tmp_path / "data"
    data.mkdir()
    triples = write_triples(data / "train.jsonl")
    refused(train_args(triples, tiny_model, data, "--overwrite"), tmp_path, "holds the input", "train.jsonl")
    refused(train_args(triples, tiny_model, tmp_path, "--overwrite"), tmp_path, "holds the input")


def test_train_refuses_an_output_that_holds_or_is_inside_any_input(tmp_path, tiny_model):
    triples = write_triples(tmp_path / "train.jsonl")
    model = tmp_path / "models" / "tiny"
    shutil.copytree(tiny_model, model)
    run = tmp_path / "run"
    run.mkdir()
    val = write_triples(run / "val.jsonl", count=8)
    refused(train_args(triples, tiny_model, run, "--val-data", str(val), "--overwrite"), tmp_path, "holds the input", "val.jsonl")
    eval_dir = tmp_path / "eval"
    (eval_dir / "qrels").mkdir(parents=True)
    refused(train_args(triples, model, eval_dir / "run", "--eval-data", str(eval_dir)), tmp_path, "is inside the input")
    refused(train_args(triples, model, model / "run"), tmp_path, "is inside the input")
    refused(train_args(triples, model, model.parent, "--overwrite"), tmp_path, "holds the input", str(model))
    other = tmp_path / "other-run" / "checkpoints" / "step-2"
    other.mkdir(parents=True)
    refused(train_args(triples, tiny_model, tmp_path / "other-run" / "checkpoints" / "step-2" / "x", "--resume-from",
                       str(other)), tmp_path, "is inside the input")


def test_train_resume_from_its_own_checkpoint_is_no_input_overlap(tmp_path, tiny_model):
    run = tmp_path / "run"
    config = dict(train_data=tmp_path / "t.jsonl", output_dir=run, model=str(tiny_model))
    own = TrainConfig(**config, resume=str(run / "checkpoints" / "step-4"))
    check_folder_output(run, train_inputs(own))  # the run's own checkpoint: allowed
    elsewhere = TrainConfig(**config, resume=str(run / "saved" / "step-4"))
    with pytest.raises(UserError, match="holds the input"):
        check_folder_output(run, train_inputs(elsewhere))


def test_train_overwrite_refuses_a_directory_that_is_not_a_run(tmp_path, triples_file, tiny_model):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text(json.dumps({"model_type": "bert"}))  # a model's config.json is no run's
    (mine / "thesis.tex").write_text("mine")
    assert not is_run_directory(mine)
    refused(train_args(triples_file, tiny_model, mine, "--overwrite"), tmp_path, "--overwrite refused", "holds no ragtrain run")
    refused(train_args(triples_file, tiny_model, mine), tmp_path, "holds no ragtrain run")


@pytest.mark.slow
def test_train_overwrite_replaces_the_run_and_keeps_other_files(tmp_path, triples_file, tiny_model):
    run = tmp_path / "run"
    assert runner.invoke(app, train_args(triples_file, tiny_model, run, "--report-to", "tensorboard")).exit_code == 0
    assert (run / "tensorboard").is_dir()  # the old run's events must not mix with the new run's
    (run / "results.json").write_text("{}")  # e.g. written by `ragtrain evaluate --output`
    (run / "checkpoints" / "step-6" / "optimizer.pt").unlink()  # damaged: --overwrite must still replace it
    result = runner.invoke(app, train_args(triples_file, tiny_model, run, "--overwrite", "--seed", "3"))
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(run)) == ["checkpoints", "config.json", "final", "metrics.jsonl", "results.json"]
    assert json.loads((run / "config.json").read_text())["seed"] == 3 and (run / "results.json").read_text() == "{}"


# ---- outputs that cannot be written: one line before any work

@pytest.mark.parametrize("command", ["prepare", "train", "evaluate --output", "evaluate --run-file"])
def test_an_output_under_proc_is_refused_before_any_work(tmp_path, tiny_model, command):
    docs = write_documents(tmp_path / "docs")
    triples = write_triples(tmp_path / "train.jsonl")
    (tmp_path / "eval").mkdir()
    args = {
        "prepare": ["prepare-data", str(docs), "-o", "/proc/ragtrain-out"],
        "train": train_args(triples, tiny_model, Path("/proc/ragtrain-run")),
        "evaluate --output": ["evaluate", "bm25", "--eval-data", str(tmp_path / "eval"), "--output", "/proc/r.json"],
        "evaluate --run-file": ["evaluate", "bm25", "--eval-data", str(tmp_path / "eval"), "--run-file", "/proc/r.trec"],
    }[command]
    refused(args, tmp_path, "cannot write in /proc")


def test_an_output_that_is_a_device_is_refused_not_replaced(tmp_path):
    (tmp_path / "eval").mkdir()
    refused(["evaluate", "bm25", "--eval-data", str(tmp_path / "eval"), "--output", "/dev/null"], tmp_path,
            "--output /dev/null exists and is not a regular file")
    assert Path("/dev/null").is_char_device()


def test_a_read_only_output_folder_is_refused_before_any_work(tmp_path, docs_dir, triples_file, tiny_model):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    if os.access(locked, os.W_OK):
        pytest.skip("running as root: chmod does not stop writes")
    refused(["prepare-data", str(docs_dir), "-o", str(locked / "out")], tmp_path, "cannot write in", "permission denied")
    refused(train_args(triples_file, tiny_model, locked / "run"), tmp_path, "cannot write in", "permission denied")


# ---- a disk that fills up while writing: one line, the old copy whole, no temporaries

def test_a_full_disk_during_prepare_keeps_the_old_output(tmp_path, docs_dir, monkeypatch):
    from tests.test_atomic import FullDisk

    out = tmp_path / "out"
    assert runner.invoke(app, ["prepare-data", str(docs_dir), "-o", str(out), *PREPARE]).exit_code == 0
    monkeypatch.setattr(atomic, "open", lambda *a, **k: FullDisk(open(*a, **k)), raising=False)
    refused(["prepare-data", str(docs_dir), "-o", str(out), "--overwrite", "--seed", "3", *PREPARE], tmp_path,
            f"cannot write {out}: no space left on the device; free some space", "nothing was left half-written")
    assert sorted(os.listdir(tmp_path)) == ["docs", "out"]


@pytest.mark.slow
def test_a_full_disk_during_a_checkpoint_keeps_the_last_checkpoint(tmp_path, triples_file, tiny_model, monkeypatch):
    real_save, calls = torch.save, []

    def save(obj, handle, *args, **kwargs):  # the 4th file is step-6's optimizer state: the disk is full by then
        if isinstance(handle, io.BytesIO):  # RNG states serialised to send between ranks: not a file
            return real_save(obj, handle, *args, **kwargs)
        calls.append(handle)
        if len(calls) <= 3:
            return real_save(obj, handle, *args, **kwargs)
        handle.write(b"half a tensor")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", save)
    run = tmp_path / "run"
    result = runner.invoke(app, train_args(triples_file, tiny_model, run, "--save-steps", "3"))
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert lines == [f"error: cannot write {run / 'checkpoints' / 'step-6'}: no space left on the device; free some "
                     "space and run again (nothing was left half-written)"]
    assert sorted(os.listdir(run / "checkpoints")) == ["step-3"] and missing_files(run / "checkpoints" / "step-3") == []
    assert LOCK_NAME not in os.listdir(run)
