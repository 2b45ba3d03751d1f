"""The table at the end of a run: the median rate without the first steps, skipped steps, and what best/ holds."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from ragtrain.config.train import TrainConfig
from ragtrain.training.checkpoint import TrainState
from ragtrain.training.summary import training_table


def rows(table) -> dict[str, str]:
    console = Console(width=300, record=True, file=open("/dev/null", "w"))
    console.print(table)
    lines = [line.strip("│ ").split("│") for line in console.export_text().splitlines() if line.startswith("│")]
    return {name.strip(): value.strip() for name, value in lines}


CONFIG = TrainConfig(train_data=Path("train.jsonl"), output_dir=Path("run"), epochs=2)


def test_the_median_rate_leaves_out_the_first_steps_and_the_figures_are_the_runs():
    state = TrainState(step=6, epoch=2)
    table = rows(training_table(CONFIG, state, [1.0, 1.0, 1.0, 10.0, 20.0, 90.0], 12.34, 6, 512.4))
    assert table["steps"] == "6 / 6" and table["epochs"] == "2 / 2" and table["time"] == "12.3 s"
    assert table["triples/s (median)"] == "20.0" and table["peak memory"] == "512 MB"
    assert table["final model"] == str(Path("run") / "final") and "best model" not in table
    assert rows(training_table(CONFIG, state, [5.0, 7.0], 1.0, 6, 1.0))["triples/s (median)"] == "7.0"  # the last
    assert rows(training_table(CONFIG, state, [], 1.0, 6, 1.0))["triples/s (median)"] == "-"


def test_skipped_steps_show_when_there_were_some_or_fp16_could_skip_them():
    assert "steps skipped (loss or gradient not finite)" not in rows(training_table(CONFIG, TrainState(), [], 1, 1, 1))
    skipped = rows(training_table(CONFIG, TrainState(skipped_steps=2), [], 1, 1, 1))
    assert skipped["steps skipped (loss or gradient not finite)"] == "2"
    fp16 = TrainConfig(train_data=Path("t.jsonl"), precision="fp16")
    assert rows(training_table(fp16, TrainState(), [], 1, 1, 1))["steps skipped (loss or gradient not finite)"] == "0"


def test_a_best_model_from_step_0_is_named_the_base_model_and_its_head():
    state = TrainState(step=4, stopped_early=True, best_metric=0.51234, best_step=0)
    validated = TrainConfig(train_data=Path("t.jsonl"), val_data=Path("val.jsonl"), output_dir=Path("run"))
    table = rows(training_table(validated, state, [], 1, 8, 1))
    assert table["steps"] == "4 / 8 (stopped early)" and table["best model"] == str(Path("run") / "best")
    assert table["best val_loss"] == "0.5123 at step 0 (the base model: no step beat it)"  # no --eval-data: val_loss
    headed = TrainConfig(train_data=Path("t.jsonl"), eval_data=Path("eval"), output_dim=8)
    assert "its --output-dim head as initialised" in rows(training_table(headed, state, [], 1, 8, 1))["best ndcg@10"]
