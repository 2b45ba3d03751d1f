"""The figures: titles and labels of the logged keys, where the bars of several evaluations go, and PNGs sized by
their number of panels."""

from __future__ import annotations

import io

from PIL import Image

from ragtrain.reporting.pagedata import Bar, Panel
from ragtrain.reporting.plots import bar_positions, curves_figure, curves_png, eval_png, label_of, title_of


def test_titles_and_labels_of_logged_keys():
    assert title_of("lr_base_no_decay") == "learning rate: base, no decay"
    assert title_of("lr_head_decay") == "learning rate: head, decay" and label_of("lr_head_decay") == "learning rate"
    assert title_of("loss_q2d") == "loss: queries -> documents" and label_of("loss_q2d") == "loss"
    assert title_of("ndcg@10") == "ndcg@10" and label_of("ndcg@10") == "ndcg@10"


def test_bars_of_another_evaluation_start_after_a_gap():
    bars = [Bar("a", 0.5, None, 0), Bar("b", 0.6, 0.1, 0), Bar("c", 0.4, None, 1), Bar("d", 0.3, -0.1, 1)]
    assert bar_positions(bars) == [0.0, 1.0, 2.6, 3.6]


def size(png: bytes) -> tuple[int, int]:
    assert png.startswith(b"\x89PNG")
    with Image.open(io.BytesIO(png)) as image:
        return image.size


def test_pngs_are_sized_by_their_panels():
    panel = Panel("loss", {"run": ([1, 2, 3], [2.0, 1.5, 1.2]), "other": ([1, 2], [2.1, 1.9])})
    assert size(curves_png([panel], "one", ["run", "other"])) == (460, 300)  # one 4.6 x 3.0 inch panel at 100 dpi
    assert size(curves_png([panel] * 4, "four", ["run", "other"])) == (1380, 600)  # 3 columns, 2 rows
    chart = {"ndcg@10": [Bar("base", 0.68, None), Bar("tuned", 0.75, 0.07)], "recall@10": [Bar("base", 0.8, None)]}
    width, height = size(eval_png(chart, "Evaluation"))
    assert width == 2 * 500 and height > 300  # two metrics side by side, each at least 5 inches wide


def test_step_axes_tick_whole_steps_only():
    """Validations at steps 0, 17 and 34 once drew ticks at 2.5 ... 17.5: a step is a whole number."""
    validation = Panel("val_loss", {"run": ([0, 17, 34], [0.41, 0.37, 0.36])})
    training = Panel("loss", {"run": (list(range(1, 5)), [0.9, 0.8, 0.85, 0.7])})
    figure = curves_figure([validation, training], "Validation", ["run"])
    figure.canvas.draw()
    for ax in figure.axes[:2]:
        shown = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert len(shown) >= 2 and all(float(t).is_integer() for t in shown), shown
