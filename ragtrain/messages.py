"""Lines for the user on stderr: a warning (the run goes on, but they should know), a plain line, or how far a long
stage has come (a bar on a terminal, lines in a log); and what the libraries may print besides them.

User errors are not printed here: they are raised as UserError and cli.py prints the one line.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
import warnings
from collections.abc import Iterator

from rich.console import Console
from tqdm import tqdm

_stderr = Console(stderr=True)
_silent = False  # a process that is not the run's first under torchrun: its lines would repeat the first's


def silence_this_process() -> None:
    """From now on this process prints nothing here (decided once, at the start of a command, on ranks above 0)."""
    global _silent
    _silent = True


def warn(message: str) -> None:
    """`warning: <message>` on one line, the first word in yellow."""
    if not _silent:
        _stderr.print(f"[yellow]warning:[/yellow] {message}", highlight=False, soft_wrap=True)


def tell(message: str) -> None:
    """`message` on one line, as it is (what the run is doing: its device, a resume, a note)."""
    if not _silent:
        _stderr.print(message, highlight=False, soft_wrap=True)


PROGRESS_SECONDS = 30.0  # between two progress lines in a log: often enough to see a run move, rarely enough to read


class Progress:
    """How far a long stage has come: a tqdm bar on a terminal; in a log (stderr is no terminal, where the bar
    hides itself) a line every PROGRESS_SECONDS, `mining (bm25): 120,000/800,000 queries (15%), 410 queries/s,
    27 min left` (without the total and the time left when `total` is None), and a last line with the total time,
    printed only when the stage took long enough for a line: a quick stage says nothing."""

    def __init__(self, total: int | None, desc: str, units: str):
        self.total, self.desc, self.units, self.done = total, desc, units, 0
        self.started = self.last_line = time.monotonic()
        self.lines = 0
        self.bar = tqdm(total=total, desc=desc, unit=units, leave=False, disable=_silent) if sys.stderr.isatty() else None

    def update(self, count: int = 1) -> None:
        self.done += count
        if self.bar is not None:
            self.bar.update(count)
            return
        now = time.monotonic()
        if now - self.last_line < PROGRESS_SECONDS or (self.total is not None and self.done >= self.total):
            return
        self.last_line, self.lines = now, self.lines + 1
        rate = self.done / max(now - self.started, 1e-9)
        if self.total is None:  # a stream of unknown length: how far, and how fast
            tell(f"{self.desc}: {self.done:,} {self.units}, {rate:,.0f} {self.units}/s")
            return
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        tell(f"{self.desc}: {self.done:,}/{self.total:,} {self.units} ({100 * self.done / max(self.total, 1):.0f}%), "
             f"{rate:,.0f} {self.units}/s, {_duration(left)} left")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.lines:
            tell(f"{self.desc}: {self.done:,} {self.units} in {_duration(time.monotonic() - self.started)}")

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _duration(seconds: float) -> str:
    """12 s, 4 min 05 s, 2 h 03 min."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


@contextlib.contextmanager
def library_noise(shown: bool) -> Iterator[None]:
    """The libraries' own warnings and log lines during one command: hidden unless `shown` (--verbose). Decided
    once, where the command starts (cli.py): transformers' load report of missing weights, peft's FutureWarnings,
    Optuna's traceback of each failed trial, a plotting library's warning. ragtrain's own lines go through tell and
    warn, not through logging or warnings, so they always show. What was set before is put back afterwards (a
    process may run several commands: the tests do)."""
    if shown:
        yield
        return
    previous = logging.root.manager.disable
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)  # every logger's warnings and below; errors still show
        try:
            yield
        finally:
            logging.disable(previous)
