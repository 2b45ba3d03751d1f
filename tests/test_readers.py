"""Readers: every file format into documents, the fields a row's text, title and id come from, bad bytes counted."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

import ragtrain.files.jsonfiles as jsonfiles
from ragtrain.data.documents import sections_of
from ragtrain.data.readers import Document, Fields, find_files, read_file
from ragtrain.errors import UserError


def read(tmp_path: Path, name: str, data: str | bytes, fields: Fields = Fields()) -> tuple[list[Document], Counter]:
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    counts: Counter = Counter()
    return list(read_file(path, name, fields, counts)), counts


def test_markdown_title_and_sections(tmp_path):
    docs, _ = read(tmp_path, "a.md", "# Bread baking\n\nIntro text.\n\n## Proofing the dough\n\nLet it rise.\n")
    assert docs[0].title == "Bread baking" and docs[0].doc_id == "a.md"
    assert sections_of(docs[0].text) == [("Bread baking", ["Intro text."]), ("Proofing the dough", ["Let it rise."])]


def test_rst_header_block_gives_title_and_is_dropped(tmp_path):
    text = "PEP: 9\nTitle: Sample Plaintext Template\nAuthor: Someone <a@b.c>,\n  Other <d@e.f>\nStatus: Active\n\n" \
           "Abstract\n========\n\nThis PEP is a template.\n"
    docs, _ = read(tmp_path, "pep-0009.rst", text)
    assert docs[0].title == "Sample Plaintext Template"
    assert "Author" not in docs[0].text
    assert sections_of(docs[0].text) == [("Abstract", ["This PEP is a template."])]


def test_txt_without_heading_is_titled_by_file_name(tmp_path):
    docs, _ = read(tmp_path, "river_notes.txt", "just some words here\n")
    assert docs[0].title == "river notes"


def test_html_keeps_visible_text_only(tmp_path):
    html = ("<html><head><title>Kettle guide</title><style>p {color: red}</style></head><body>"
            "<script>var x = 1;</script><h2>Boiling water</h2><p>Fill the kettle &amp; switch it on.</p>"
            "<ul><li>one</li><li>two</li></ul><pre>def f():\n    return 1</pre></body></html>")
    docs, _ = read(tmp_path, "k.html", html)
    assert docs[0].title == "Kettle guide"
    assert "var x" not in docs[0].text and "color" not in docs[0].text
    sections = sections_of(docs[0].text)
    assert sections[0][0] == "Boiling water"
    assert sections[0][1] == ["Fill the kettle & switch it on.", "- one\n- two", "```\ndef f():\n    return 1\n```"]


def test_jsonl_json_csv_tsv_with_chosen_fields(tmp_path):
    rows = [{"id": "d1", "body": "first text", "name": "One"}, {"id": "d2", "body": "second text"}, {"id": "d3"}]
    fields = Fields(text="body", title="name", id="id")
    docs, _ = read(tmp_path, "r.jsonl", "\n".join(json.dumps(r) for r in rows), fields)
    assert [(d.doc_id, d.title, d.text) for d in docs] == [("d1", "One", "first text"), ("d2", "", "second text")]
    docs, _ = read(tmp_path, "r.json", json.dumps(rows), fields)
    assert [d.doc_id for d in docs] == ["d1", "d2"]
    docs, _ = read(tmp_path, "r.csv", 'id,body,name\nc1,"a, quoted text",\nc2,plain,Two\n', fields)
    assert [(d.doc_id, d.title, d.text) for d in docs] == [("c1", "", "a, quoted text"), ("c2", "Two", "plain")]
    docs, _ = read(tmp_path, "r.tsv", "body\tother\ntab text\tx\n", Fields(text="body"))
    assert [(d.doc_id, d.text) for d in docs] == [("r.tsv#1", "tab text")]


def test_unknown_field_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="--text-field"):
        read(tmp_path, "r.jsonl", '{"body": "x"}\n')
    with pytest.raises(UserError, match="--id-field"):
        read(tmp_path, "r.jsonl", '{"text": "x"}\n', Fields(id="doc_id"))


def test_bad_bytes_are_replaced_and_counted_empty_and_binary_skipped(tmp_path):
    docs, counts = read(tmp_path, "latin.txt", "caf\xe9 au lait".encode("latin-1"))
    assert docs[0].text == "caf\ufffd au lait"
    assert counts["files_not_utf8"] == 1 and counts["characters_replaced"] == 1
    docs, counts = read(tmp_path, "empty.md", "  \n\n ")
    assert docs == [] and counts["files_skipped_empty"] == 1
    docs, counts = read(tmp_path, "blob.txt", b"\x89PNG\x00\x00\x01")
    assert docs == [] and counts["files_skipped_binary"] == 1


def test_a_jsonl_document_line_over_the_bound_and_deep_json_are_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(jsonfiles, "MAX_LINE_BYTES", 64)  # the one bound, jsonfiles'
    path = tmp_path / "docs.jsonl"
    path.write_text(json.dumps({"text": "short"}) + "\n" + json.dumps({"text": "long " * 40}) + "\n")
    with pytest.raises(UserError, match=r"docs\.jsonl:2: line longer than"):
        list(read_file(path, path.name, Fields(), Counter()))
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(UserError, match=r"deep\.json:1: JSON nested too deeply"):
        list(read_file(deep, deep.name, Fields(), Counter()))


def test_files_are_found_recursively_sorted_and_named_relative_to_the_folder_given(tmp_path):
    (tmp_path / "docs" / "b").mkdir(parents=True)
    for name in ("docs/b/z.md", "docs/a.txt", "docs/skip.bin", "one.rst"):
        (tmp_path / name).write_text("words")
    found = find_files((tmp_path / "docs", tmp_path / "one.rst"))
    assert [(path.relative_to(tmp_path).as_posix(), name) for path, name in found] == [
        ("docs/a.txt", "a.txt"), ("docs/b/z.md", "b/z.md"), ("one.rst", "one.rst")]
    with pytest.raises(UserError, match="not found"):
        find_files((tmp_path / "missing",))
