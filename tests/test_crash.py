"""Process-level crash tests: real `ragtrain` processes killed with SIGKILL at chosen and at random moments.

`train` killed during a step, a checkpoint write, a checkpoint re-save, the swap of a re-saved checkpoint
(also where the file system cannot swap in one step) and the final save, then `--resume` until it completes,
ends with the weights of an uninterrupted run. `prepare-data --overwrite` killed anywhere leaves the whole old
output or the whole new one. Two `train` processes on one run directory: the second stops at once.

The processes are forked from tests/crash_runner.py, which imports ragtrain once. RAGTRAIN_CRASH_KILLS=N runs
N random kills of each command instead of 3 (RAGTRAIN_CRASH_SEED picks the moments).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from ragtrain.commands.prepare import prepare
from ragtrain.config.prepare import PrepareConfig
from ragtrain.files.atomic import recover
from ragtrain.files.names import LOCK_NAME
from ragtrain.training.checkpoint import missing_files
from tests.conftest import write_documents, write_triples

pytestmark = pytest.mark.slow
RUNNER = Path(__file__).with_name("crash_runner.py")
RANDOM_KILLS = int(os.environ.get("RAGTRAIN_CRASH_KILLS", "3"))
SEED = int(os.environ.get("RAGTRAIN_CRASH_SEED", "0"))
# 24 triples in batches of 4: 6 steps an epoch, 12 in all; checkpoints at steps 3, 6, 9 and 12, and steps 6
# and 12 are saved twice (at their save step, then at the epoch's end): the re-saves. Dropout is on.
# --no-grad-cache: the kill plan counts backward calls, one per step without GradCache (its step calls backward once
# per micro-batch too)
TRAIN_OPTIONS = ["--batch-size", "4", "--max-seq-length", "32", "--learning-rate", "1e-3", "--device", "cpu",
                 "--epochs", "2", "--save-steps", "3", "--keep-last", "2", "--log-steps", "1", "--attention-dropout",
                 "--no-grad-cache"]
PREPARE_OPTIONS = ["--max-words", "30", "--overlap", "4", "--val-fraction", "0.2", "--test-fraction", "0.2",
                   "--negative-range", "1-50"]


class Runner:
    """The fork server: start a command (optionally with kill points), wait for it, or kill it."""

    def __init__(self, logs: Path):
        env = os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
                            "PYTHONPATH": str(RUNNER.parents[1]) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.process = subprocess.Popen([sys.executable, str(RUNNER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, env=env)
        self.logs, self.count = logs, 0

    def _ask(self, request: dict) -> dict:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def start(self, args: list[str], **options) -> tuple[int, Path]:
        self.count += 1
        log = self.logs / f"{self.count:03d}-{args[0]}.log"
        return self._ask({"run": args, "log": str(log), **options})["pid"], log

    def wait(self, pid: int) -> int:
        return self._ask({"wait": pid})["status"]

    def run(self, args: list[str], **options) -> tuple[int, Path]:
        pid, log = self.start(args, **options)
        return self.wait(pid), log

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    server = Runner(tmp_path_factory.mktemp("crash-logs"))
    yield server
    server.close()


def weights(model_dir: Path) -> dict:
    return load_file(model_dir / "model.safetensors")


def assert_same_weights(got: Path, expected: Path) -> None:
    a, b = weights(got), weights(expected)
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6


def losses(run: Path) -> list[float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [row["loss"] for row in rows if "loss" in row]


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def assert_checkpoints_whole(run: Path) -> None:
    """What a kill left: every step-N folder is a complete checkpoint (a half-written one has a temporary name)."""
    for path in (run / "checkpoints").glob("step-*"):
        assert missing_files(path) == [], path


def killed(runner: Runner, args: list[str], **options) -> Path:
    status, log = runner.run(args, **options)
    assert status == -signal.SIGKILL, f"not killed at the planned point (status {status}):\n{log.read_text()[-3000:]}"
    return log


def completed(runner: Runner, args: list[str], **options) -> Path:
    status, log = runner.run(args, **options)
    assert status == 0, log.read_text()[-3000:]
    return log


@pytest.fixture(scope="module")
def training(tmp_path_factory, tiny_model, runner):
    """The arguments of a training run, and an uninterrupted run's final/ and wall time for comparison."""
    folder = tmp_path_factory.mktemp("crash-train")
    triples, val = write_triples(folder / "train.jsonl", count=24), write_triples(folder / "val.jsonl", count=8)

    def args(run: Path, *extra: str) -> list[str]:
        return ["train", "--train-data", str(triples), "--val-data", str(val), "--model", str(tiny_model),
                "--output-dir", str(run), *TRAIN_OPTIONS, *extra]

    started = time.monotonic()
    completed(runner, args(folder / "straight"))
    return args, folder / "straight" / "final", time.monotonic() - started


def test_train_killed_at_chosen_moments_resumes_to_the_same_weights(tmp_path, training, runner):
    args, reference, _ = training
    run = tmp_path / "run"
    step6, step12 = str(run / "checkpoints" / "step-6"), str(run / "checkpoints" / "step-12")
    plan = [  # each kill hits the run that the previous kill left, resumed
        ([], [{"target": "torch.autograd:backward", "n": 5}]),  # in step 5's backward pass (step-3 is saved)
        (["--resume"], [{"target": "ragtrain.training.checkpoint:_torch_save", "n": 2}]),  # writing step-6
        (["--resume"], [{"target": "ragtrain.training.checkpoint:_torch_save", "n": 5, "match": ".step-6."}]),  # re-saving it
        (["--resume"], [{"target": "ragtrain.files.atomic:_exchange", "n": 1, "match": step6, "when": "after"}]),  # swapped
    ]
    for extra, kill in plan:
        killed(runner, args(run, *extra), kill=kill)
        assert_checkpoints_whole(run)
    # Where two folders cannot be swapped in one step: killed after step-12 went aside, before its re-save came in.
    no_swap = [["ragtrain.files.atomic:_exchange", False]]
    killed(runner, args(run, "--resume"), fake=no_swap,
           kill=[{"target": "os:rename", "n": 1, "match": [".step-12.", ".old.tmp"], "when": "after"}])
    assert not Path(step12).exists() and len(list((run / "checkpoints").glob(".step-12.*.old.tmp"))) == 1
    assert_checkpoints_whole(run)
    final_save = [  # half-way through writing final/ (weights written, sentence-transformers files not), then
        {"target": "ragtrain.model.saving:_write_sentence_transformers_files", "n": 1, "match": ".final."},
        {"target": "os:rename", "n": 1, "match": str(run / "final")},  # with final/ complete under its temporary name
    ]
    log = killed(runner, args(run, "--resume"), kill=final_save[:1])
    assert "put back" in log.read_text()  # step-12 restored from the copy set aside
    killed(runner, args(run, "--resume"), kill=final_save[1:])
    assert not (run / "final").exists()
    completed(runner, args(run, "--resume"))
    straight = reference.parent
    assert_same_weights(run / "final", reference)
    assert_same_weights(run / "best", straight / "best")
    assert losses(run) == pytest.approx(losses(straight), abs=1e-6)  # the same trajectory, step by step
    assert sorted(p.name for p in run.iterdir()) == ["best", "checkpoints", "config.json", "final", "metrics.jsonl"]
    assert names(run / "checkpoints") == names(straight / "checkpoints")  # nothing left over


def test_train_killed_at_random_moments_resumes_to_the_same_weights(tmp_path, training, runner):
    args, reference, duration = training
    run, rng, kills, runs = tmp_path / "run", random.Random(SEED), 0, 0
    while True:
        runs += 1
        assert runs <= 10 * RANDOM_KILLS + 10, "the kills never landed"
        resumable = (run / "checkpoints").is_dir() and any((run / "checkpoints").glob("step-*"))
        started = time.monotonic()
        pid, log = runner.start(args(run, "--resume" if resumable else "--overwrite"))
        if kills < RANDOM_KILLS:
            time.sleep(rng.uniform(0.0, duration))
            os.kill(pid, signal.SIGKILL)  # a process that has just exited is a zombie until waited for: no error
        status = runner.wait(pid)
        assert status in (0, -signal.SIGKILL), log.read_text()[-3000:]
        assert_checkpoints_whole(run)
        kills += status == -signal.SIGKILL
        if status == 0:
            assert_same_weights(run / "final", reference)
            if kills >= RANDOM_KILLS:
                break
            if not resumable:  # a whole run: the kill moments are drawn from its length from now on
                duration = time.monotonic() - started
            shutil.rmtree(run)  # finished before the kill: start another run to kill
    print(f"train survived {kills} random kills in {runs} runs")


# ---- prepare-data --overwrite

@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """Documents, and the old (seed 1) and new (seed 2) outputs of prepare-data on them, made in this process."""
    folder = tmp_path_factory.mktemp("crash-prepare")
    docs = write_documents(folder / "docs", per_topic=4)
    made = {}
    for name, seed in (("old", 1), ("new", 2)):
        prepare(PrepareConfig((docs,), folder / name, seed=seed, max_words=30, overlap=4, val_fraction=0.2,
                              test_fraction=0.2, negative_range=(1, 50)))
        made[name] = (folder / name / "manifest.json").read_bytes()
    assert made["old"] != made["new"]
    return docs, folder, made


def whole_output(directory: Path, made: dict) -> str:
    """'old' or 'new': which complete output `directory` holds, every file checked against its manifest."""
    manifest = (directory / "manifest.json").read_bytes()
    which = [name for name, content in made.items() if content == manifest]
    assert len(which) == 1, "manifest.json is neither the old one nor the new one"
    listed = json.loads(manifest)["sha256"]
    files = {p.relative_to(directory).as_posix(): p for p in directory.rglob("*") if p.is_file()}
    assert set(files) == set(listed) | {"manifest.json"}
    for name, digest in listed.items():
        assert hashlib.sha256(files[name].read_bytes()).hexdigest() == digest, name
    return which[0]


def overwrite_args(docs: Path, out: Path) -> list[str]:
    return ["prepare-data", str(docs), "--output-dir", str(out), "--overwrite", "--seed", "2", *PREPARE_OPTIONS]


@pytest.mark.parametrize("moment, fake, kill, left", [
    ("writing the new copy", [], {"target": "ragtrain.data.beir:atomic_write_text", "n": 1}, "old"),  # eval/corpus.jsonl
    ("before the swap", [], {"target": "ragtrain.files.atomic:_exchange", "n": 1}, "old"),
    ("after the swap", [], {"target": "ragtrain.files.atomic:_exchange", "n": 1, "when": "after"}, "new"),
    ("old copy set aside", [["ragtrain.files.atomic:_exchange", False]],
     {"target": "os:rename", "n": 1, "match": ".old.tmp", "when": "after"}, "old"),
    ("new copy in, old not yet deleted", [["ragtrain.files.atomic:_exchange", False]],
     {"target": "os:rename", "n": 2, "match": "/out", "when": "after"}, "new"),
])
def test_prepare_overwrite_killed_leaves_the_whole_old_or_new_output(tmp_path, outputs, runner, moment, fake, kill, left):
    docs, folder, made = outputs
    out = tmp_path / "out"
    shutil.copytree(folder / "old", out)
    killed(runner, overwrite_args(docs, out), fake=fake, kill=[kill])
    recover(out)  # what the next run does first (only needed where the old copy was set aside)
    assert whole_output(out, made) == left
    completed(runner, overwrite_args(docs, out))
    assert whole_output(out, made) == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporaries left beside it


def test_prepare_overwrite_killed_at_random_moments(tmp_path, outputs, runner):
    docs, folder, made = outputs
    out, rng, seen = tmp_path / "out", random.Random(SEED), []
    started = time.monotonic()
    shutil.copytree(folder / "old", out)
    completed(runner, overwrite_args(docs, out))
    duration = time.monotonic() - started
    for _ in range(RANDOM_KILLS):
        shutil.rmtree(out)
        shutil.copytree(folder / "old", out)
        pid, log = runner.start(overwrite_args(docs, out))
        time.sleep(rng.uniform(0.0, duration))
        os.kill(pid, signal.SIGKILL)
        assert runner.wait(pid) in (0, -signal.SIGKILL), log.read_text()[-3000:]
        recover(out)
        seen.append(whole_output(out, made))
        completed(runner, overwrite_args(docs, out))
        assert whole_output(out, made) == "new"
    print(f"prepare-data survived {len(seen)} random kills; left old/new: {seen.count('old')}/{seen.count('new')}")


# ---- one run per directory

def test_a_second_train_on_the_same_run_directory_stops_at_once(tmp_path, training, runner):
    args, _, _ = training
    run, pause = tmp_path / "run", tmp_path / "pause"
    pause.mkdir()
    first, _ = runner.start(args(run), pause={"target": "ragtrain.training.setup:load_triples", "n": 1, "dir": str(pause)})
    deadline = time.monotonic() + 300
    while not (pause / "paused").exists():  # the first run holds the lock now
        assert time.monotonic() < deadline, "the first run never reached its pause"
        time.sleep(0.05)
    status, log = runner.run(args(run))
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    assert status == 2 and len(lines) == 1, log.read_text()
    assert "in use by another 'ragtrain train'" in lines[0] and f"pid {first} " in lines[0]
    (pause / "go").touch()
    assert runner.wait(first) == 0
    assert (run / "final" / "model.safetensors").is_file() and not (run / LOCK_NAME).exists()
    # A run killed while it holds the lock leaves the file behind; the next run takes it over.
    holder, _ = runner.start(args(run, "--overwrite"), kill=[{"target": "ragtrain.training.setup:load_triples", "n": 1}])
    assert runner.wait(holder) == -signal.SIGKILL
    assert json.loads((run / LOCK_NAME).read_text())["pid"] == holder
    log = completed(runner, args(run, "--overwrite"))
    assert f"took over the lock of a run that is gone (pid {holder} " in log.read_text()
    assert not (run / LOCK_NAME).exists()
