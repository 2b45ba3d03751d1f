"""The table printed at the end of a training run."""

from __future__ import annotations

import statistics

from rich.table import Table

from ragtrain.config.train import TrainConfig
from ragtrain.files.names import BEST, FINAL
from ragtrain.training.checkpoint import TrainState

WARM_UP_STEPS = 3  # left out of the median rate: the first steps pay for one-off allocations and kernel choices


def training_table(config: TrainConfig, state: TrainState, rates: list[float], seconds: float, total_steps: int,
                   memory_mb: float, failed: bool = False) -> Table:
    """What the run did: steps and epochs, time, median triples/s, peak memory, skipped steps, best and final model
    (none for a `failed` run)."""
    table = Table(title=f"Training run {config.output_dir}", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    steady = rates[min(WARM_UP_STEPS, len(rates) - 1):] if rates else []
    rows = [
        ("steps", f"{state.step} / {total_steps}" + (" (stopped early)" if state.stopped_early else "")),
        ("epochs", f"{state.epoch} / {config.epochs}"),
        ("time", f"{seconds:.1f} s"),
        ("triples/s (median)", f"{statistics.median(steady):.1f}" if steady else "-"),
        ("peak memory", f"{memory_mb:.0f} MB"),
    ]
    if state.skipped_steps or config.precision == "fp16":
        rows.append(("steps skipped (loss or gradient not finite)", str(state.skipped_steps)))
    if state.best_metric is not None:
        rows.append((f"best {config.selection_metric or 'metric'}", f"{state.best_metric:.4f} at step {state.best_step}"
                     + (base_model_note(config) if state.best_step == 0 else "")))
        rows.append(("best model", str(config.output_dir / BEST)))
    rows.append(("final model", "not written: the run failed" if failed else str(config.output_dir / FINAL)))
    for name, value in rows:
        table.add_row(name, value)
    return table


def base_model_note(config: TrainConfig) -> str:
    """best/ is step 0's model: the base, seen through a --output-dim head as initialised (random when new)."""
    if config.output_dim is not None:
        return " (the base model with its --output-dim head as initialised: no step beat it)"
    return " (the base model: no step beat it)"
