"""Lines for the user on stderr: a warning (the run goes on, but they should know) or a plain line of progress;
and what the libraries may print besides them.

User errors are not printed here: they are raised as UserError and cli.py prints the one line.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

from rich.console import Console

_stderr = Console(stderr=True)


def warn(message: str) -> None:
    """`warning: <message>` on one line, the first word in yellow."""
    _stderr.print(f"[yellow]warning:[/yellow] {message}", highlight=False, soft_wrap=True)


def tell(message: str) -> None:
    """`message` on one line, as it is (what the run is doing: its device, a resume, a note)."""
    _stderr.print(message, highlight=False, soft_wrap=True)


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
