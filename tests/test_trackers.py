"""--report-to: TensorBoard's event file read back holds every metrics.jsonl number at its step; wandb and mlflow
get the same numbers through their APIs (fake modules stand in, so CI needs neither); a backend that is not
installed, or not known, stops with one line before anything loads."""

from __future__ import annotations

import json
import sys
import types

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ragtrain.commands.train import train
from ragtrain.config.train import TrainConfig
from ragtrain.files.names import TENSORBOARD_DIR
from ragtrain.training.trackers import open_trackers, scalars
from tests.conftest import user_error, write_triples


class FakeWandb(types.ModuleType):
    """wandb's calls that ragtrain makes, recorded: init -> run.log / run.config.update / run.finish."""

    def __init__(self):
        super().__init__("wandb")
        self.calls = []

    def init(self, **kwargs):
        self.calls.append(("init", kwargs))
        config = types.SimpleNamespace(update=lambda options, **kw: self.calls.append(("config", options)))
        return types.SimpleNamespace(log=lambda values, step: self.calls.append(("log", step, values)),
                                     config=config, finish=lambda: self.calls.append(("finish",)))


class FakeMlflow(types.ModuleType):
    def __init__(self):
        super().__init__("mlflow")
        self.calls = []

    def start_run(self, run_name):
        self.calls.append(("start", run_name))

    def log_params(self, params):
        self.calls.append(("params", params))

    def log_metrics(self, metrics, step):
        self.calls.append(("log", step, metrics))

    def end_run(self):
        self.calls.append(("end",))


@pytest.fixture
def fakes(monkeypatch):
    wandb, mlflow = FakeWandb(), FakeMlflow()
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    monkeypatch.setitem(sys.modules, "mlflow", mlflow)
    return wandb, mlflow


def logged(run_dir) -> list[tuple[int, dict]]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(row["step"], scalars(row)) for row in rows]


@pytest.mark.slow
def test_every_metrics_number_reaches_tensorboard_wandb_and_mlflow_at_its_step(tmp_path, tiny_model, fakes):
    wandb, mlflow = fakes
    triples = write_triples(tmp_path / "train.jsonl", count=12, negatives=1)
    cfg = TrainConfig(train_data=triples, val_data=write_triples(tmp_path / "val.jsonl", count=4), model=str(tiny_model),
                      output_dir=tmp_path / "run", batch_size=4, max_seq_length=32, device="cpu", log_steps=1,
                      epochs=2, report_to=("tensorboard", "wandb", "mlflow"))
    train(cfg)
    expected = logged(cfg.output_dir)
    assert {"cos_positive", "cos_hardest_negative", "embedding_std", "mean_pairwise_cos", "loss", "grad_norm",
            "lr_base_decay", "triples_per_s", "tokens_per_s", "memory_mb", "skipped_steps", "val_loss"} <= {
        name for _, values in expected for name in values}
    # TensorBoard: read the event file back; each tag's (step, value) pairs are metrics.jsonl's, in order
    events = EventAccumulator(str(cfg.output_dir / TENSORBOARD_DIR), size_guidance={"scalars": 0})
    events.Reload()
    by_tag: dict[str, list] = {}
    for step, values in expected:
        for name, value in values.items():
            by_tag.setdefault(name, []).append((step, value))
    assert sorted(events.Tags()["scalars"]) == sorted(by_tag)
    for tag, pairs in by_tag.items():
        got = [(event.step, event.value) for event in events.Scalars(tag)]
        assert [s for s, _ in got] == [s for s, _ in pairs], tag
        assert [v for _, v in got] == pytest.approx([v for _, v in pairs], rel=1e-6), tag  # stored as float32
    assert events.Tags()["tensors"] == ["config/text_summary"]
    # wandb and mlflow: the same rows, in order, after the run's options
    options = json.loads((cfg.output_dir / "config.json").read_text())
    assert wandb.calls[0] == ("init", {"project": "ragtrain", "name": "run", "dir": str(cfg.output_dir)})
    assert wandb.calls[1] == ("config", options) and wandb.calls[-1] == ("finish",)
    assert [call[1:] for call in wandb.calls[2:-1]] == expected
    assert mlflow.calls[0] == ("start", "run") and mlflow.calls[-1] == ("end",)
    assert mlflow.calls[1] == ("params", {k: v if isinstance(v, str) else json.dumps(v) for k, v in options.items()})
    assert [call[1:] for call in mlflow.calls[2:-1]] == expected  # no '@' in these names; see below for ndcg@10


def test_mlflow_names_have_no_at_sign_and_skip_values_that_are_not_finite(tmp_path, fakes):
    _, mlflow = fakes
    with open_trackers(("mlflow",), tmp_path / "run", {"epochs": 1, "model": "m"}, 0) as (tracker,):
        tracker.log(3, {"ndcg@10": 0.5, "loss": float("nan")})
    assert mlflow.calls == [("start", "run"), ("params", {"epochs": "1", "model": "m"}),
                            ("log", 3, {"ndcg_at_10": 0.5}), ("end",)]


def test_trackers_are_closed_when_the_run_fails(tmp_path, fakes):
    wandb, _ = fakes
    with pytest.raises(RuntimeError):
        with open_trackers(("wandb",), tmp_path / "run", {}, 0):
            raise RuntimeError("the run failed")
    assert wandb.calls[-1] == ("finish",)


@pytest.mark.parametrize("backend", ["wandb", "mlflow", "tensorboard"])
def test_a_tracker_that_is_not_installed_is_one_line_naming_the_extra(tmp_path, monkeypatch, backend):
    monkeypatch.setitem(sys.modules, backend, None)  # import fails, as when the package is absent
    triples = write_triples(tmp_path / "train.jsonl")
    line = user_error(["train", "--train-data", str(triples), "-o", str(tmp_path / "run"), "--report-to",
                       f"tensorboard,{backend}"])
    assert f"--report-to {backend} needs the {backend} package" in line
    assert f"pip install 'ragtrain[{backend}]'" in line
    assert not (tmp_path / "run").exists()


def test_report_to_reads_a_comma_separated_list_and_refuses_an_unknown_tracker(tmp_path):
    triples = write_triples(tmp_path / "train.jsonl")
    assert "got 'comet'" in user_error(["train", "--train-data", str(triples), "--report-to", "tensorboard,comet"])
    assert TrainConfig(train_data=triples).report_to == ()


def test_a_resumed_run_replaces_tensorboards_events_after_its_checkpoint(tmp_path):
    with open_trackers(("tensorboard",), tmp_path, {}, 0) as (tracker,):
        for step in (1, 2, 3, 4):
            tracker.log(step, {"loss": float(step)})
    with open_trackers(("tensorboard",), tmp_path, {}, 2) as (tracker,):  # resumed from the checkpoint at step 2
        for step in (3, 4):
            tracker.log(step, {"loss": 10.0 * step})
    events = EventAccumulator(str(tmp_path / TENSORBOARD_DIR), size_guidance={"scalars": 0})
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(1, 1.0), (2, 2.0), (3, 30.0), (4, 40.0)]
