"""JSON and JSONL files: errors name the file and the line."""

from __future__ import annotations

import pytest

from ragtrain.errors import UserError
from ragtrain.files import jsonfiles


def test_json_and_jsonl_errors_name_the_file_and_the_line(tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"a": 1}\n\n{"a": \n')
    with pytest.raises(UserError, match=r"rows\.jsonl:3: not valid JSON \(Expecting value\); fix or remove that line"):
        jsonfiles.read_numbered_jsonl(rows)
    rows.write_text('{"a": 1}\r\n\n[1]\n')
    with pytest.raises(UserError, match=r"rows\.jsonl:3: expected a JSON object, got list"):
        jsonfiles.read_numbered_jsonl(rows)
    lines = tmp_path / "lines.jsonl"
    lines.write_bytes(b'\xef\xbb\xbf{"a": 1}\n \n[2]\n{"b": "\xff"}')  # a BOM first, a byte that is not UTF-8 last
    numbered = [(number, text) for number, text, _ in jsonfiles.lenient_lines(lines)]
    assert list(jsonfiles.jsonl_values(numbered, lines)) == [(1, {"a": 1}), (3, [2]), (4, {"b": "\ufffd"})]
    assert [bad for _, _, bad in jsonfiles.lenient_lines(lines)] == [0, 0, 0, 1]
    whole = tmp_path / "whole.json"
    whole.write_text('{\n  "a": ,\n}')
    with pytest.raises(UserError, match=r"whole\.json:2: not valid JSON \(Expecting value\); fix the file"):
        jsonfiles.read_json(whole)
    whole.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(UserError, match=r"whole\.json: JSON nested too deeply; fix the file"):
        jsonfiles.read_json(whole)
