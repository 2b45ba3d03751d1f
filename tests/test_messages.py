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
