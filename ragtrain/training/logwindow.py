"""What a metrics.jsonl step row says: the mean of each step figure (the loss and its parts, the diagnostics, the
gradient norm, the batch's size and masked candidates) over the steps since the last row, as the Hugging Face trainer
logs its loss; throughput as the interval's triples and tokens over its seconds. One batch's loss is noisy: a curve of
single batches can seem to rise while the mean falls.

The window is plain data (JSON-ready) held in the TrainState, so a checkpoint carries it and a resumed run logs the
same means as an uninterrupted one.
"""

from __future__ import annotations

import math

from ragtrain.config.train import AUTO_LOG_ROWS

EMPTY: dict = {"steps": 0, "sums": {}, "counts": {}, "triples": 0, "tokens": 0, "seconds": 0.0}


def log_interval(log_steps: int, total_steps: int) -> int:
    """--log-steps, or for 0 (auto) every step of a run under 2 * AUTO_LOG_ROWS steps and about AUTO_LOG_ROWS rows
    of a longer one."""
    return log_steps or max(1, total_steps // AUTO_LOG_ROWS)


def add_step(window: dict, figures: dict[str, float], triples: int, tokens: int, seconds: float) -> dict:
    """`window` with one more step; a figure that is not finite (a skipped step's loss) is left out of its mean."""
    sums, counts = dict(window["sums"]), dict(window["counts"])
    for name, value in figures.items():
        if math.isfinite(value):
            sums[name] = sums.get(name, 0.0) + value
            counts[name] = counts.get(name, 0) + 1
        else:
            sums.setdefault(name, 0.0)
            counts.setdefault(name, 0)
    return {"steps": window["steps"] + 1, "sums": sums, "counts": counts, "triples": window["triples"] + triples,
            "tokens": window["tokens"] + tokens, "seconds": window["seconds"] + seconds}


def window_row(window: dict) -> dict[str, float]:
    """The means over the window (NaN for a figure no step of it had finite), its throughput, and how many steps
    it covers (`mean_of_steps`)."""
    row = {name: total / window["counts"][name] if window["counts"][name] else math.nan
           for name, total in window["sums"].items()}
    seconds = window["seconds"] or math.nan
    return row | {"triples_per_s": window["triples"] / seconds, "tokens_per_s": window["tokens"] / seconds,
                  "mean_of_steps": window["steps"]}
