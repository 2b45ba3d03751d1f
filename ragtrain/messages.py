"""Lines for the user on stderr: a warning (the run goes on, but they should know) or a plain line of progress.

User errors are not printed here: they are raised as UserError and cli.py prints the one line.
"""

from __future__ import annotations

from rich.console import Console

_stderr = Console(stderr=True)


def warn(message: str) -> None:
    """`warning: <message>` on one line, the first word in yellow."""
    _stderr.print(f"[yellow]warning:[/yellow] {message}", highlight=False, soft_wrap=True)


def tell(message: str) -> None:
    """`message` on one line, as it is (what the run is doing: its device, a resume, a note)."""
    _stderr.print(message, highlight=False, soft_wrap=True)
