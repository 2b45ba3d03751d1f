"""Lines for the user: one line each on stderr, however long, and nothing on stdout."""

from __future__ import annotations

from ragtrain import messages
from ragtrain.messages import tell, warn


def test_a_warning_is_one_line_on_stderr_however_long(capsys):
    warn("x" * 300)
    out, err = capsys.readouterr()
    assert out == "" and err == "warning: " + "x" * 300 + "\n"


def test_a_plain_line_is_printed_as_it_is(capsys):
    tell("note: put back run/checkpoints/step-4 " + "y" * 200)
    assert capsys.readouterr().err == "note: put back run/checkpoints/step-4 " + "y" * 200 + "\n"


def test_a_long_stage_prints_progress_lines_in_a_log_and_a_quick_one_nothing(capsys, monkeypatch):
    with messages.Progress(4, "mining (bm25)", "queries") as progress:  # stderr is no terminal here: a log
        progress.update(2)
    assert capsys.readouterr().err == ""  # quicker than PROGRESS_SECONDS: silent
    monkeypatch.setattr(messages, "PROGRESS_SECONDS", 0.0)
    with messages.Progress(4, "mining (bm25)", "queries") as progress:
        progress.update(1)
        progress.update(3)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("mining (bm25): 1/4 queries (25%), ") and lines[0].endswith(" left")
    assert lines[-1].startswith("mining (bm25): 4 queries in ") and len(lines) == 2
    with messages.Progress(None, "reading", "documents") as progress:
        progress.update(5)
    assert capsys.readouterr().err.startswith("reading: 5 documents, ")
