"""User errors: an exception of their own that no library handler takes for its own, and bad values quoted short."""

from __future__ import annotations

from ragtrain.errors import QUOTED_CHARS, UserError, quoted


def test_a_user_error_is_none_of_the_errors_that_library_code_catches():
    assert issubclass(UserError, Exception)
    assert not issubclass(UserError, (OSError, ValueError, KeyError, RuntimeError))  # cli.py tells these apart


def test_a_bad_value_is_quoted_as_json_and_cut_short():
    assert quoted(["d1"]) == '["d1"]' and quoted(None) == "null" and quoted(True) == "true"
    assert quoted("x" * 100) == '"' + "x" * (QUOTED_CHARS - 1)
