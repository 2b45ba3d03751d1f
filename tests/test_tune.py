"""tune: trials are train runs reported to Optuna; pruning, the study directory, several processes on one study,
a killed study continued, and the errors caught before the first trial."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragtrain.cli import app
from ragtrain.config.datakinds import LABEL_FREE_DEFAULTS, LABELLED_DEFAULTS
from ragtrain.config.tune import TuneConfig
from ragtrain.errors import UserError
from tests.conftest import user_error, write_beir_folder, write_triples

optuna = pytest.importorskip("optuna")
RUNNER = Path(__file__).with_name("tune_runner.py")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def data(tmp_path) -> tuple[Path, Path]:
    eval_dir = write_beir_folder(tmp_path / "eval", [("q1", "d1", 1), ("q2", "d2", 1), ("q3", "d3", 1)])
    return write_triples(tmp_path / "train.jsonl", 12), eval_dir


def tune_config(tmp_path, data, tiny_model, **options) -> TuneConfig:
    train, eval_dir = data
    base = dict(train_data=train, eval_data=eval_dir, eval_split="test", model=str(tiny_model),
                output_dir=tmp_path / "study", batch_size=4, max_seq_length=32, device="cpu", n_trials=3)
    return TuneConfig(**(base | options))


def scripted(values_by_call: list[list[float]], seen: list):
    """A train that reports the given validations (steps 1, 2, ...) and stops when told; records its configs."""

    def train(config, on_validation=None):
        seen.append(config)
        config.output_dir.mkdir(parents=True)
        for step, value in enumerate(values_by_call[len(seen) - 1], start=1):
            if on_validation(step, {"ndcg@10": value, "recall@10": value}):
                break
        return config.output_dir / "final"

    return train


def test_a_trial_below_the_median_is_pruned_and_the_study_directory_is_written(tmp_path, data, tiny_model,
                                                                               monkeypatch):
    import ragtrain.commands.train
    from ragtrain.commands.tune import tune

    seen = []
    # the median pruner waits for two finished trials; the third reports 0.1 at step 1, below their median 0.6
    monkeypatch.setattr(ragtrain.commands.train, "train", scripted([[0.5, 0.6], [0.7, 0.8], [0.1, 0.9], [0.9, 0.95]], seen))
    study_dir = tune(tune_config(tmp_path, data, tiny_model, n_trials=4, seed=7))
    rows = json.loads((study_dir / "results.json").read_text())
    assert [r["state"] for r in rows] == ["COMPLETE", "COMPLETE", "PRUNED", "COMPLETE"]
    assert [r["value"] for r in rows] == [0.6, 0.8, 0.1, 0.95]  # a trial's best validation; pruned: before its stop
    assert [r["steps"] for r in rows] == [2, 2, 1, 2]
    # every trial in its own directory, with the searched options drawn from the default space
    assert [c.output_dir.name for c in seen] == ["trial-0000", "trial-0001", "trial-0002", "trial-0003"]
    for config, row in zip(seen, rows):
        assert 1e-5 <= config.learning_rate <= 2e-4 and config.learning_rate == row["learning_rate"]
        assert config.epochs in (1, 2, 3) and 0.02 <= config.temperature <= 0.1 and 0 <= config.warmup_ratio <= 0.3
        assert config.batch_size == 4 and config.model == str(tiny_model)  # the fixed train options reach each trial
    csv_lines = (study_dir / "results.csv").read_text().splitlines()
    assert csv_lines[0].startswith("trial,state,value,learning_rate,epochs,temperature,warmup_ratio,steps")
    assert len(csv_lines) == 5
    assert (study_dir / "tune_params.png").read_bytes()[:4] == b"\x89PNG"
    assert (study_dir / "tune_history.png").read_bytes()[:4] == b"\x89PNG"


def test_an_option_given_to_tune_is_fixed_and_a_range_narrows_the_search(tmp_path, data, tiny_model, monkeypatch):
    import ragtrain.commands.train
    from ragtrain.commands.tune import tune

    seen = []
    monkeypatch.setattr(ragtrain.commands.train, "train", scripted([[0.5]] * 3, seen))
    tune(tune_config(tmp_path, data, tiny_model, epochs=1, lr_range=(3e-5, 4e-5), temperature_range=(0.07, 0.07)))
    assert {c.epochs for c in seen} == {1}
    assert all(3e-5 <= c.learning_rate <= 4e-5 for c in seen) and {c.temperature for c in seen} == {0.07}
    rows = json.loads((tmp_path / "study" / "results.json").read_text())
    assert "epochs" not in rows[0] and "learning_rate" in rows[0]


def test_a_new_studys_first_trial_is_trains_defaults_for_the_kind_of_triples(tmp_path, data, tiny_model,
                                                                             monkeypatch):
    import ragtrain.commands.train
    from ragtrain.commands.tune import tune

    (tmp_path / "manifest.json").write_text(json.dumps({"data_kind": "labelled"}))  # beside train.jsonl
    seen = []
    monkeypatch.setattr(ragtrain.commands.train, "train", scripted([[0.5]] * 3, seen))
    tune(tune_config(tmp_path, data, tiny_model, n_trials=2, seed=3))
    first = seen[0]
    assert {name: getattr(first, name) for name in LABELLED_DEFAULTS} == LABELLED_DEFAULTS
    assert LABELLED_DEFAULTS != LABEL_FREE_DEFAULTS and seen[1].learning_rate != first.learning_rate  # then drawn
    # a range that leaves a default out: that option is drawn, the others still start from the defaults
    seen.clear()
    low, high = 1.5 * LABELLED_DEFAULTS["learning_rate"], 3 * LABELLED_DEFAULTS["learning_rate"]
    tune(tune_config(tmp_path, data, tiny_model, n_trials=1, lr_range=(low, high), output_dir=tmp_path / "narrow"))
    assert low <= seen[0].learning_rate <= high
    assert (seen[0].epochs, seen[0].temperature) == (LABELLED_DEFAULTS["epochs"], LABELLED_DEFAULTS["temperature"])
    # without a manifest the triples count as label-free
    (tmp_path / "manifest.json").unlink()
    seen.clear()
    tune(tune_config(tmp_path, data, tiny_model, n_trials=1, output_dir=tmp_path / "unlabelled"))
    assert {name: getattr(seen[0], name) for name in LABEL_FREE_DEFAULTS} == LABEL_FREE_DEFAULTS


def test_a_failed_trial_is_recorded_and_the_study_goes_on(tmp_path, data, tiny_model, monkeypatch):
    import ragtrain.commands.train
    from ragtrain.commands.tune import tune

    calls = []

    def train(config, on_validation=None):
        calls.append(config)
        if len(calls) == 1:
            raise UserError("training diverged: the weights are not finite after step 3")
        on_validation(1, {"ndcg@10": 0.4, "recall@10": 0.4})
        return config.output_dir / "final"

    monkeypatch.setattr(ragtrain.commands.train, "train", train)
    tune(tune_config(tmp_path, data, tiny_model, n_trials=2))
    rows = json.loads((tmp_path / "study" / "results.json").read_text())
    # a failed trial does not count towards --n-trials: two complete ones after it
    assert [r["state"] for r in rows] == ["FAIL", "COMPLETE", "COMPLETE"] and "diverged" in rows[0]["error"]


def test_a_study_where_every_trial_fails_stops_and_exits_non_zero(tmp_path, data, tiny_model, monkeypatch):
    """Every trial failing (a learning rate of 1e30, a full disk) used to end in 'study results in DIR', exit 0."""
    import ragtrain.commands.train
    from ragtrain.tuning.study import FAILED_IN_A_ROW

    calls = []

    def train(config, on_validation=None):
        calls.append(config)
        raise UserError("training failed: 7 of 8 steps were skipped")

    monkeypatch.setattr(ragtrain.commands.train, "train", train)
    train_file, eval_dir = data
    result = CliRunner().invoke(app, ["tune", "--train-data", str(train_file), "--eval-data", str(eval_dir),
                                      "--eval-split", "test", "--model", str(tiny_model), "-o", str(tmp_path / "study"),
                                      "--n-trials", "20"])
    assert result.exit_code == 2 and "Traceback" not in result.output and "study results in" not in result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("error:")]  # after the trials' lines
    assert len(calls) == FAILED_IN_A_ROW == 3  # then the study stops instead of failing 20 times
    assert "no trial of the study completed (3 failed, 0 other)" in line and "7 of 8 steps were skipped" in line
    rows = json.loads((tmp_path / "study" / "results.json").read_text())
    assert [r["state"] for r in rows] == ["FAIL"] * 3 and not (tmp_path / "study" / "best").exists()


def test_a_trial_whose_process_was_killed_is_recorded_as_killed_not_running(tmp_path, data, tiny_model):
    """A trial another process left RUNNING when it was killed shows KILLED in results.csv, even when this process
    started before that one was killed (so its start-up sweep could not see it)."""
    from ragtrain.tuning.results import finish_study
    from ragtrain.tuning.space import DEFAULT_SPACE

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}", direction="maximize")
    study.enqueue_trial({"learning_rate": 2e-5})
    done = study.ask()
    done.set_user_attr("dir", str(tmp_path / "trial-0000"))
    study.tell(done, 0.5)
    left = study.ask()
    for name, value in (("pid", int(gone.stdout)), ("host", __import__("socket").gethostname()), ("dir", "x")):
        left.set_user_attr(name, value)
    tune_dir = tmp_path / "study"
    tune_dir.mkdir()
    finish_study(optuna, study, tune_config(tmp_path, data, tiny_model), DEFAULT_SPACE)
    rows = json.loads((tune_dir / "results.json").read_text())
    assert [r["state"] for r in rows] == ["COMPLETE", "KILLED"] and rows[1]["error"] == "its process was killed"
    assert "RUNNING" not in (tune_dir / "results.csv").read_text()


@pytest.mark.slow
def test_real_trials_keep_the_best_model_and_only_the_best_k_trials_weights(tmp_path, data, tiny_model):
    from ragtrain.commands.tune import tune

    study_dir = tune(tune_config(tmp_path, data, tiny_model, n_trials=3, epochs=1, eval_steps=1, keep_best=1,
                                 pruning=False))
    rows = json.loads((study_dir / "results.json").read_text())
    assert [r["state"] for r in rows] == ["COMPLETE"] * 3
    best = max(rows, key=lambda r: r["value"])
    source = Path(best["dir"]) / "best"
    assert (study_dir / "best" / "model.safetensors").read_bytes() == (source / "model.safetensors").read_bytes()
    for row in rows:  # --keep-best 1: the others' weights are gone, their logs stay
        run_dir = Path(row["dir"])
        assert (run_dir / "metrics.jsonl").is_file()
        assert (run_dir / "best").is_dir() == (row is best) and (run_dir / "checkpoints").is_dir() == (row is best)
    # each trial's value is the best nDCG@10 its own run logged
    for row in rows:
        logged = [json.loads(line) for line in (Path(row["dir"]) / "metrics.jsonl").read_text().splitlines()]
        assert row["value"] == max(r["ndcg@10"] for r in logged if "ndcg@10" in r)


def runner(tmp_path: Path, mode: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, str(RUNNER), str(tmp_path), mode, "--", "tune", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def study_args(tmp_path, data, tiny_model, *extra: str) -> list[str]:
    train, eval_dir = data
    return ["--train-data", str(train), "--eval-data", str(eval_dir), "--eval-split", "test", "--model",
            str(tiny_model), "-o", str(tmp_path / "study"), "--device", "cpu", *extra]


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["sqlite", "journal"])
def test_two_processes_share_one_study_and_count_each_trial_once(tmp_path, data, tiny_model, storage):
    url = f"sqlite:///{tmp_path / 'shared.db'}" if storage == "sqlite" else str(tmp_path / "shared.journal")
    args = study_args(tmp_path, data, tiny_model, "--storage", url, "--study", "shared", "--n-trials", "8",
                      "--no-pruning")
    processes = [runner(tmp_path, "wait2", *args) for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    study = optuna.load_study(study_name="shared", storage=url if storage == "sqlite" else
                              optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(url)))
    trials = study.get_trials()
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    # each process stops once the study holds 8; one may finish the trial it had started: never more than 9
    assert 8 <= len(complete) <= 9 and len(trials) == len(complete)
    assert len({t.number for t in trials}) == len(trials)
    dirs = [Path(t.user_attrs["dir"]) for t in trials]
    assert len(set(dirs)) == len(dirs) and all(d.is_dir() for d in dirs)
    assert len({t.user_attrs["pid"] for t in trials}) == 2  # both processes pulled trials
    assert {int((d / "owner").read_text()) for d in dirs} == {t.user_attrs["pid"] for t in trials}


@pytest.mark.slow
def test_a_killed_study_continues_and_runs_the_killed_trial_again(tmp_path, data, tiny_model):
    args = study_args(tmp_path, data, tiny_model, "--n-trials", "3", "--no-pruning")
    process = runner(tmp_path, "hang", *args)
    deadline = time.time() + 120
    while not (tmp_path / "hanging").exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert (tmp_path / "hanging").exists(), process.communicate()[0]
    process.send_signal(signal.SIGKILL)
    process.wait()
    again = runner(tmp_path, "plain", *args)
    output = again.communicate(timeout=300)[0]
    assert again.returncode == 0, output
    assert "trial 1 was left running by a process that is gone" in output
    study = optuna.load_study(study_name="ragtrain", storage=f"sqlite:///{tmp_path / 'study' / 'study.db'}")
    states = [t.state.name for t in study.get_trials()]
    assert states == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]  # 3 counted; the killed one run again as trial 2
    killed, retry = study.trials[1], study.trials[2]
    assert retry.params == killed.params and retry.user_attrs["retry_of"] == 1
    rows = json.loads((tmp_path / "study" / "results.json").read_text())
    assert [r["state"] for r in rows] == ["COMPLETE", "KILLED", "COMPLETE", "COMPLETE"]


def test_errors_before_the_first_trial(tmp_path, data, tiny_model):
    train, eval_dir = data
    base = ["tune", "--train-data", str(train), "--model", str(tiny_model), "-o", str(tmp_path / "study")]
    assert "tune needs --eval-data" in user_error(base)
    with_eval = base + ["--eval-data", str(eval_dir), "--eval-split", "test"]
    (tmp_path / "space.json").write_text(json.dumps({"learning_rat": {"type": "float", "low": 1e-5, "high": 1e-4}}))
    assert "'learning_rat' is not a train option" in user_error(with_eval + ["--space", str(tmp_path / "space.json")])
    (tmp_path / "space.json").write_text(json.dumps({"epochs": {"type": "int", "low": 3, "high": 1}}))
    assert "is empty (low above high)" in user_error(with_eval + ["--space", str(tmp_path / "space.json")])
    assert "--lr-range" in user_error(with_eval + ["--lr-range", "1e-4,1e-5"])
    assert "--lr-range must be LOW,HIGH" in user_error(with_eval + ["--lr-range", "fast"])
    assert "Optuna cannot open it" in user_error(with_eval + ["--storage", "nosuchdb://x/y"])
    assert "Optuna cannot open it" in user_error(with_eval + ["--storage", str(tmp_path / "no" / "such" / "journal")])
    assert not (tmp_path / "study" / "trials").exists()


@pytest.mark.parametrize("flags, words", [
    (["--warmup-range", "0,1.5"], "--warmup-range: warmup_ratio 1.5 is refused by train (--warmup-ratio must be in [0, 1)"),
    (["--epochs-range", "0,0"], "--epochs-range: epochs 0 is refused by train (--epochs must be at least 1"),
    (["--lr-range", "-1,1"], "a log range must start above 0"),
    (["--temperature-range", "0,0.1"], "a log range must start above 0"),
    (["--space", '{"loss": {"choices": ["infonce", "contrastive"]}}'], "loss 'contrastive' is refused by train"),
    (["--space", '{"batch_size": {"choices": [8, "a"]}}'], "'a' is not a value of batch_size (int)"),
    (["--space", '{"batch_size": {"type": "float", "low": 4, "high": 16}}'], "takes whole numbers; search it with type int"),
    (["--space", '{"pooling": {"choices": ["mean", "sum"]}}'], "pooling 'sum' is refused by train"),
    (["--space", '{"warmup_ratio": {"low": 0.1, "high": 1.0}}'], "warmup_ratio 1.0 is refused by train"),
    # an option the space searches and a flag fixes: the space's entry was silently ignored
    (["--space", '{"batch_size": {"choices": [4, 8]}}', "--batch-size", "16"], "--batch-size 16 fixes batch_size"),
    (["--lr-range", "1e-5,1e-4", "--learning-rate", "3e-5"], "--learning-rate 3e-05 fixes learning_rate, which --lr-range"),
])
def test_a_range_or_choice_train_refuses_is_one_line_before_any_trial(tmp_path, data, tiny_model, monkeypatch, flags,
                                                                      words):
    """Each used to fail every trial with a traceback and exit 0, or train with a value the help forbids."""
    import ragtrain.commands.train

    monkeypatch.setattr(ragtrain.commands.train, "train", lambda *a, **k: pytest.fail("a trial ran"))
    if flags[0] == "--space":
        (tmp_path / "space.json").write_text(flags[1])
        flags = ["--space", str(tmp_path / "space.json"), *flags[2:]]
    train_file, eval_dir = data
    line = user_error(["tune", "--train-data", str(train_file), "--eval-data", str(eval_dir), "--eval-split", "test",
                       "--model", str(tiny_model), "-o", str(tmp_path / "study"), *flags])
    assert words in line
    assert not (tmp_path / "study").exists()


@pytest.mark.parametrize("content", [b"not json at all\n", b'{"query": "q", "positive": "p"}\n', b"\x00\x01binary"])
def test_a_storage_file_that_is_no_journal_is_one_line(tmp_path, data, tiny_model, content):
    train_file, eval_dir = data
    storage = tmp_path / "storage.log"
    storage.write_bytes(content)
    line = user_error(["tune", "--train-data", str(train_file), "--eval-data", str(eval_dir), "--eval-split", "test",
                       "--model", str(tiny_model), "-o", str(tmp_path / "study"), "--storage", str(storage)])
    assert f"--storage {storage} is not an Optuna journal file" in line
    assert storage.read_bytes() == content and not (tmp_path / "study").exists()


def test_a_missing_optuna_is_one_line(tmp_path, data, tiny_model, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    train, eval_dir = data
    line = user_error(["tune", "--train-data", str(train), "--eval-data", str(eval_dir), "--eval-split", "test",
                       "-o", str(tmp_path / "study")])
    assert "pip install 'ragtrain[tune]'" in line
