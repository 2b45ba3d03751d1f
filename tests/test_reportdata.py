"""The data behind each plot and table of the report, from hand-made metrics rows, options and evaluate results."""

from __future__ import annotations

import pytest

from ragtrain.reporting.pagedata import (
    DIAGNOSTIC_PANELS,
    TRAINING_PANELS,
    Bar,
    eval_bars,
    eval_metrics,
    options_table,
    panels,
    series,
)

RUN_A = [
    {"step": 0, "epoch": 0, "val_loss": 2.0, "ndcg@10": 0.5},
    {"step": 1, "epoch": 0, "lr_base_decay": 1e-5, "lr_head_decay": 1e-3, "loss_q2d": 1.9, "loss": 1.9, "grad_norm": 3.0,
     "triples_per_s": 10.0, "cos_positive": 0.8, "batch_size": 4},
    {"step": 2, "epoch": 0, "lr_base_decay": 2e-5, "lr_head_decay": 2e-3, "loss_q2d": 1.5, "loss": 1.5, "grad_norm": 2.0,
     "triples_per_s": 12.0, "cos_positive": 0.85, "batch_size": 4},
    {"step": 2, "epoch": 0, "val_loss": 1.6, "ndcg@10": 0.6},
]
RUN_B = [  # resumed after step 1: step 2 logged twice, the later row wins; no head, no ndcg
    {"step": 0, "epoch": 0, "val_loss": 2.1},
    {"step": 1, "epoch": 0, "lr_base_decay": 3e-5, "loss_q2d": 1.8, "loss": 1.8, "grad_norm": 4.0, "triples_per_s": 9.0},
    {"step": 2, "epoch": 0, "lr_base_decay": 3e-5, "loss_q2d": 9.9, "loss": 9.9, "grad_norm": 9.9, "triples_per_s": 9.9},
    {"step": 2, "epoch": 0, "lr_base_decay": 4e-5, "loss_q2d": 1.4, "loss": 1.4, "grad_norm": 1.0, "triples_per_s": 8.0},
]


def test_series_reads_one_key_in_step_order_and_a_repeated_step_keeps_its_last_value():
    assert series(RUN_B, "loss") == ([1, 2], [1.8, 1.4])
    assert series(RUN_A, "ndcg@10") == ([0, 2], [0.5, 0.6])
    assert series(RUN_A, "missing") == ([], [])


def test_training_panels_group_loss_parts_learning_rates_gradient_norm_and_throughput_with_runs_overlaid():
    found = panels({"a": RUN_A, "b": RUN_B}, wanted=TRAINING_PANELS)
    assert [p.key for p in found] == ["loss", "loss_q2d", "lr_base_decay", "lr_head_decay", "grad_norm", "triples_per_s"]
    by_key = {p.key: p.lines for p in found}
    assert by_key["loss"] == {"a": ([1, 2], [1.9, 1.5]), "b": ([1, 2], [1.8, 1.4])}
    assert by_key["lr_head_decay"] == {"a": ([1, 2], [1e-3, 2e-3])}  # run b has no head: no line
    assert by_key["grad_norm"]["b"] == ([1, 2], [4.0, 1.0])
    assert [p.key for p in panels({"a": RUN_A}, wanted=DIAGNOSTIC_PANELS)] == ["cos_positive"]


def test_validation_panels_take_every_validation_figure():
    found = panels({"a": RUN_A, "b": RUN_B}, validation=True)
    assert [p.key for p in found] == ["val_loss", "ndcg@10"]
    assert found[0].lines == {"a": ([0, 2], [2.0, 1.6]), "b": ([0], [2.1])}
    assert found[1].lines == {"a": ([0, 2], [0.5, 0.6])}


def results(*models: tuple[str, dict]) -> dict:
    return {"models": {name: {"metrics": metrics} for name, metrics in models}}


def test_eval_bars_give_each_models_value_and_change_against_its_evaluations_first():
    first = results(("base", {"ndcg@10": 0.68, "recall@10": 0.81, "ndcg@1": 0.5}), ("tuned", {"ndcg@10": 0.75, "recall@10": 0.80}))
    second = results(("bm25", {"ndcg@10": 0.67}), ("tuned", {"ndcg@10": 0.70}))
    assert eval_metrics([first, second]) == ["ndcg@10", "recall@10"]
    chart = eval_bars([first, second], ["dev", "test"])
    assert [(b.model, b.group) for b in chart["ndcg@10"]] == [("dev: base", 0), ("dev: tuned", 0), ("test: bm25", 1),
                                                             ("test: tuned", 1)]
    assert chart["ndcg@10"][0] == Bar("dev: base", 0.68, None, 0)
    assert chart["ndcg@10"][1].change == pytest.approx(0.07) and chart["ndcg@10"][3].change == pytest.approx(0.03)
    assert [b.model for b in chart["recall@10"]] == ["dev: base", "dev: tuned"]  # the second file has no recall@10
    single = eval_bars([first], ["dev"])
    assert single["recall@10"][1] == Bar("tuned", 0.80, pytest.approx(-0.01), 0)  # one file: plain model names
    assert eval_metrics([results(("m", {"p@3": 0.1, "x@1": 0.2}))]) == ["p@3", "x@1"]  # none of the usual: its own


def test_options_side_by_side_mark_the_differences():
    table = options_table({"a": {"epochs": 1, "learning_rate": 2e-5, "seed": 42},
                           "b": {"epochs": 1, "learning_rate": 8e-5, "seed": 42, "symmetric": True}})
    # what tells the runs apart first, each group in the first run's order
    assert table == [("learning_rate", [2e-5, 8e-5], True), ("symmetric", [None, True], True),
                     ("epochs", [1, 1], False), ("seed", [42, 42], False)]
