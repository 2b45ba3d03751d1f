"""Experiment trackers (`train --report-to tensorboard,wandb,mlflow`): every scalar of every metrics.jsonl row, at
its step, sent to each chosen backend. metrics.jsonl stays the record; a tracker is a view of it.

One interface for all three: `log(step, scalars)`, `log_config(options)`, `close()`. Each backend's package is
imported only when asked for, so none is a dependency of ragtrain; `missing_package` lets the config refuse a
backend that is not installed before any model loads. Only rank 0 opens trackers (train.py).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from ragtrain.files.names import TENSORBOARD_DIR


class Tracker(Protocol):
    def log(self, step: int, scalars: dict[str, float]) -> None: ...

    def log_config(self, options: dict) -> None: ...

    def close(self) -> None: ...


def missing_package(backend: str) -> str | None:
    """The line to show when `backend`'s package is not installed (None when it is), without importing it."""
    if backend in sys.modules:  # already imported (or a stand-in put there); None there means "not importable"
        found = sys.modules[backend] is not None
    else:
        found = importlib.util.find_spec(backend) is not None
    return None if found else (f"--report-to {backend} needs the {backend} package; install it with "
                               f"pip install 'ragtrain[{backend}]'")


def scalars(row: dict) -> dict[str, float]:
    """The numbers of a metrics.jsonl row a tracker plots: everything but the step itself."""
    return {name: float(value) for name, value in row.items()
            if name != "step" and isinstance(value, (int, float)) and not isinstance(value, bool)}


@contextlib.contextmanager
def open_trackers(backends: tuple[str, ...], run_dir: Path, options: dict, resume_step: int) -> Iterator[list[Tracker]]:
    """The chosen trackers, each told the run's options, closed however the run ends."""
    opened: list[Tracker] = []
    try:
        for backend in backends:
            tracker = _OPENERS[backend](run_dir, resume_step)
            opened.append(tracker)
            tracker.log_config(options)
        yield opened
    finally:
        for tracker in opened:
            tracker.close()


class TensorBoardTracker:
    """Event files under RUN/tensorboard/, one tag per metrics.jsonl key. On resume the events after the
    checkpoint's step are purged (those steps run again), as metrics.jsonl drops its rows."""

    def __init__(self, run_dir: Path, resume_step: int):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir / TENSORBOARD_DIR), purge_step=resume_step + 1 if resume_step else None)

    def log(self, step: int, scalars: dict[str, float]) -> None:
        for name, value in scalars.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()  # a killed run keeps what it logged, as metrics.jsonl does

    def log_config(self, options: dict) -> None:
        # four spaces of indent make a Markdown code block in TensorBoard's text tab
        self.writer.add_text("config", "    " + json.dumps(options, indent=2).replace("\n", "\n    "), 0)

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    """A Weights & Biases run named after the run directory, in $WANDB_PROJECT (default 'ragtrain'); its files
    under RUN/wandb/. Offline or online as wandb's own settings say (WANDB_MODE)."""

    def __init__(self, run_dir: Path, resume_step: int):
        self.wandb = importlib.import_module("wandb")
        self.run = self.wandb.init(project=os.environ.get("WANDB_PROJECT", "ragtrain"), name=run_dir.name,
                                   dir=str(run_dir))

    def log(self, step: int, scalars: dict[str, float]) -> None:
        self.run.log(scalars, step=step)

    def log_config(self, options: dict) -> None:
        self.run.config.update(options, allow_val_change=True)

    def close(self) -> None:
        self.run.finish()


class MlflowTracker:
    """An MLflow run named after the run directory, wherever MLFLOW_TRACKING_URI points (default ./mlruns).
    MLflow refuses '@' in a metric name, so ndcg@10 is logged as ndcg_at_10."""

    def __init__(self, run_dir: Path, resume_step: int):
        self.mlflow = importlib.import_module("mlflow")
        self.mlflow.start_run(run_name=run_dir.name)

    def log(self, step: int, scalars: dict[str, float]) -> None:
        self.mlflow.log_metrics({name.replace("@", "_at_"): value for name, value in scalars.items()
                                 if math.isfinite(value)}, step=step)

    def log_config(self, options: dict) -> None:
        self.mlflow.log_params({name: json.dumps(value) if not isinstance(value, str) else value
                                for name, value in options.items()})

    def close(self) -> None:
        self.mlflow.end_run()


_OPENERS = {"tensorboard": TensorBoardTracker, "wandb": WandbTracker, "mlflow": MlflowTracker}
