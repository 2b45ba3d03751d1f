"""Lines for the user: one line each on stderr, however long, and nothing on stdout."""

from __future__ import annotations

from ragtrain.messages import tell, warn


def test_a_warning_is_one_line_on_stderr_however_long(capsys):
    warn("x" * 300)
    out, err = capsys.readouterr()
    assert out == "" and err == "warning: " + "x" * 300 + "\n"


def test_a_plain_line_is_printed_as_it_is(capsys):
    tell("note: put back run/checkpoints/step-4 " + "y" * 200)
    assert capsys.readouterr().err == "note: put back run/checkpoints/step-4 " + "y" * 200 + "\n"
