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


def test_library_noise_is_hidden_unless_shown_and_put_back_afterwards(capsys):
    """transformers' load report is a logger warning, peft's deprecations FutureWarnings: both hidden during a
    command unless --verbose; errors still show, ragtrain's own lines always, and the process's settings return."""
    import logging
    import warnings

    import pytest

    from ragtrain.messages import library_noise

    library = logging.getLogger("transformers.modeling_utils")
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    library.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with library_noise(shown=False):
                library.warning("BertForSequenceClassification LOAD REPORT")
                library.error("a library's error")
                warnings.warn("`is_gradient_checkpointing` is deprecated", FutureWarning, stacklevel=1)
                warn("ragtrain's own warning")
        assert [r.getMessage() for r in records] == ["a library's error"] and caught == []
        assert capsys.readouterr().err == "warning: ragtrain's own warning\n"
        with library_noise(shown=True), pytest.warns(FutureWarning, match="shown too"):
            library.warning("shown with --verbose")
            warnings.warn("shown too", FutureWarning, stacklevel=1)
        assert records[-1].getMessage() == "shown with --verbose"
        assert logging.root.manager.disable == logging.NOTSET  # put back
    finally:
        library.removeHandler(handler)


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
