"""Logged step figures are means over the logging interval (as the Hugging Face trainer logs its loss), the default
interval fits the run, and a short run's report draws every step."""

from __future__ import annotations

import json
import math

import pytest

from ragtrain.commands.train import train
from ragtrain.config.train import TrainConfig
from ragtrain.reporting.page import read_metrics
from ragtrain.reporting.pagedata import TRAINING_PANELS, panels
from ragtrain.training.logwindow import EMPTY, add_step, log_interval, window_row
from tests.conftest import write_triples


def test_the_row_holds_each_figures_mean_and_the_intervals_throughput():
    window = add_step(EMPTY, {"loss": 1.0, "grad_norm": 3.0}, triples=32, tokens=1000, seconds=2.0)
    window = add_step(window, {"loss": 0.5, "grad_norm": 1.0}, triples=5, tokens=200, seconds=0.5)
    row = window_row(window)
    assert row["loss"] == pytest.approx(0.75) and row["grad_norm"] == pytest.approx(2.0)
    assert row["triples_per_s"] == pytest.approx(37 / 2.5) and row["tokens_per_s"] == pytest.approx(1200 / 2.5)
    assert row["mean_of_steps"] == 2
    assert EMPTY["steps"] == 0 and EMPTY["sums"] == {}  # adding returns a new window, the empty one stays empty


def test_a_skipped_steps_non_finite_loss_stays_out_of_the_mean():
    window = add_step(EMPTY, {"loss": math.inf}, triples=4, tokens=10, seconds=1.0)
    assert math.isnan(window_row(window)["loss"])  # nothing finite to average: said as NaN, not hidden
    window = add_step(window, {"loss": 0.4}, triples=4, tokens=10, seconds=1.0)
    assert window_row(window)["loss"] == pytest.approx(0.4) and window_row(window)["mean_of_steps"] == 2


def test_the_window_survives_a_json_round_trip_as_a_checkpoint_stores_it():
    window = add_step(EMPTY, {"loss": 1.25}, triples=3, tokens=7, seconds=0.5)
    assert window_row(json.loads(json.dumps(window))) == window_row(window)


@pytest.mark.parametrize("log_steps, total, expected", [(0, 17, 1), (0, 199, 1), (0, 200, 2), (0, 5000, 50),
                                                        (10, 17, 10), (3, 5000, 3)])
def test_auto_logs_every_step_of_a_short_run_and_about_100_rows_of_a_long_one(log_steps, total, expected):
    assert log_interval(log_steps, total) == expected


@pytest.mark.slow
def test_a_17_step_run_logs_17_points_and_a_coarser_interval_logs_the_means_of_its_steps(tmp_path, tiny_model):
    triples = write_triples(tmp_path / "train.jsonl", count=17 * 4 - 2, negatives=1)  # 16 full batches and one of 2
    base = dict(train_data=triples, model=str(tiny_model), batch_size=4, max_seq_length=32, learning_rate=1e-3,
                epochs=1, device="cpu", seed=5)
    val = write_triples(tmp_path / "val.jsonl", count=8, negatives=1)
    train(TrainConfig(**base, output_dir=tmp_path / "every", val_data=val))  # --log-steps left at 0: auto
    train(TrainConfig(**base, output_dir=tmp_path / "by4", log_steps=4))
    every = [row for row in read_metrics(tmp_path / "every") if "loss" in row]
    assert [row["step"] for row in every] == list(range(1, 18)) and {row["epoch"] for row in every} == {1}
    validations = [(row["step"], row["epoch"]) for row in read_metrics(tmp_path / "every") if "loss" not in row]
    assert validations == [(0, 0), (17, 1)]  # epochs count from 1, as the bar does; 0 is the base model's
    loss_panel = next(p for p in panels({"every": read_metrics(tmp_path / "every")}, wanted=TRAINING_PANELS)
                      if p.key == "loss")
    assert len(loss_panel.lines["every"][0]) == 17  # what the report draws: every step
    by4 = [row for row in read_metrics(tmp_path / "by4") if "loss" in row]
    assert [row["step"] for row in by4] == [4, 8, 12, 16, 17]  # and the last step, whatever the interval
    losses = [row["loss"] for row in every]
    for row, first in zip(by4, (0, 4, 8, 12, 16)):
        steps = losses[first:row["step"]]  # the same seed gives the same steps: each row is the mean of its own
        assert row["loss"] == pytest.approx(sum(steps) / len(steps), abs=1e-6)
        assert row["mean_of_steps"] == len(steps)
    assert sum(row["batch_size"] for row in every) == 66  # one short batch of 2 somewhere in the epoch
    assert sum(row["batch_size"] * row["mean_of_steps"] for row in by4) == pytest.approx(66)
    assert json.loads((tmp_path / "every" / "config.json").read_text())["log_steps_resolved"] == 1
