"""metrics.jsonl, a run's log: one JSON line per logged step and per validation, written by rank 0 as it goes, and
each line's numbers sent on to the trackers chosen with --report-to (trackers.py).

On resume the lines after the checkpoint's step are dropped first (those steps run again), and so is a line that a
kill cut short.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ragtrain.files.atomic import atomic_write_text
from ragtrain.files.names import METRICS_LOG
from ragtrain.training.trackers import Tracker, scalars


@dataclass(frozen=True)
class RunLog:
    handle: TextIO  # metrics.jsonl, open for appending
    trackers: tuple[Tracker, ...] = ()


@contextlib.contextmanager
def metrics_log(run_dir: Path, resume_step: int, trackers: Sequence[Tracker] = ()) -> Iterator[RunLog]:
    """metrics.jsonl opened for appending; on resume, rows after the checkpoint's step are dropped first."""
    path = run_dir / METRICS_LOG
    if resume_step and path.is_file():
        rows = [line for line in path.read_text().splitlines() if _logged_step(line) <= resume_step]
        atomic_write_text(path, "".join(row + "\n" for row in rows))
    elif not resume_step:
        path.unlink(missing_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        yield RunLog(handle, tuple(trackers))


def log_row(log: RunLog | None, row: dict) -> None:
    """One line, flushed at once (a kill loses no logged step), and its numbers to every tracker at the row's
    step; nothing without a log (not rank 0)."""
    if log is None:
        return
    log.handle.write(json.dumps(row) + "\n")
    log.handle.flush()
    for tracker in log.trackers:
        tracker.log(row["step"], scalars(row))


def _logged_step(line: str) -> float:
    """The step of a metrics.jsonl line; infinity for a line cut short by a kill, so resume drops it."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return math.inf
