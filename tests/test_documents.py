"""Readers (every format) and the structure-aware chunker, with hypothesis properties."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragtrain.documents import Document, Fields, Passage, deduplicate, read_documents, sections_of, split_passages
from ragtrain.errors import UserError


def read(tmp_path: Path, name: str, data: str | bytes, fields: Fields = Fields()) -> tuple[list[Document], Counter]:
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    counts: Counter = Counter()
    return read_documents((path,), fields, counts), counts


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


def test_folders_are_read_recursively_in_sorted_order(tmp_path):
    (tmp_path / "b" / "c").mkdir(parents=True)
    (tmp_path / "b" / "c" / "z.md").write_text("zz")
    (tmp_path / "a.txt").write_text("aa")
    (tmp_path / "skip.bin").write_text("not read")
    docs = read_documents((tmp_path,), Fields(), Counter())
    assert [d.doc_id for d in docs] == ["a.txt", "b/c/z.md"]


def doc(text: str) -> Document:
    return Document("d", "T", text)


def test_empty_document_has_no_passages():
    assert split_passages(doc(""), 50, 5) == []
    assert split_passages(doc("\n\n   \n"), 50, 5) == []


def test_one_huge_paragraph_without_sentence_breaks_becomes_overlapping_windows():
    words = [f"w{i}" for i in range(25)]
    passages = split_passages(doc(" ".join(words)), 10, 2)
    assert [p.text.split() for p in passages] == [words[0:10], words[8:18], words[16:25]]


def test_long_paragraph_is_cut_at_sentence_ends_first():
    text = "One two three four five. Six seven eight nine ten. Eleven twelve thirteen fourteen fifteen."
    assert [p.text for p in split_passages(doc(text), 10, 2)] == [
        "One two three four five. Six seven eight nine ten.", "Eleven twelve thirteen fourteen fifteen."]


def test_code_block_with_blank_lines_is_one_unit_and_heading_inside_is_not_a_heading():
    text = "# Setup\n\n```python\n# not a heading\nx = 1\n\ny = 2\n```\n\nAfter the code."
    sections = sections_of(text)
    assert sections == [("Setup", ["```python\n# not a heading\nx = 1\n\ny = 2\n```", "After the code."])]


def test_tilde_underline_is_a_heading_not_a_code_fence():
    assert sections_of("Intro.\n\nThe Mixin\n~~~~~~~~~\n\nBody text.") == [("", ["Intro."]), ("The Mixin", ["Body text."])]


def test_unicode_text_is_kept_intact():
    passages = split_passages(doc("# Café\n\nNaïve façade — 東京 is a city. Ünïcödé ok."), 50, 5)
    assert passages[0].text == "Naïve façade — 東京 is a city. Ünïcödé ok." and passages[0].section == "Café"


def test_passages_carry_document_title_and_section():
    passages = split_passages(Document("doc-1", "Guide", "# Part one\n\nAlpha.\n\n# Part two\n\nBeta."), 50, 5)
    assert [(p.passage_id, p.doc_id, p.title, p.section, p.text) for p in passages] == [
        ("doc-1#0", "doc-1", "Guide", "Part one", "Alpha."), ("doc-1#1", "doc-1", "Guide", "Part two", "Beta.")]


def test_exact_and_normalised_duplicates_are_removed_and_counted():
    texts = ["Hello world.", "Hello world.", "hello   WORLD.", "Other."]
    passages = [Passage(f"p{i}", f"d{i}", "", "", t) for i, t in enumerate(texts)]
    counts: Counter = Counter()
    assert [p.passage_id for p in deduplicate(passages, counts)] == ["p0", "p3"]
    assert counts == {"passages_duplicate_exact": 1, "passages_duplicate_normalised": 1}


paragraph = st.lists(st.sampled_from(["alpha", "beta", "gamma.", "Delta", "ε", "x1", "-", "# h"]), min_size=0, max_size=60)
document_text = st.lists(paragraph.map(" ".join), max_size=8).map("\n\n".join)


@settings(max_examples=150, deadline=None)
@given(text=document_text, max_words=st.integers(8, 40), overlap_share=st.floats(0, 0.9))
def test_chunker_respects_the_limit_and_loses_no_word(text, max_words, overlap_share):
    overlap = int(overlap_share * max_words)
    passages = split_passages(doc(text), max_words, overlap)
    assert all(0 < len(p.text.split()) <= max_words for p in passages)
    body_words = {w for heading, paras in sections_of(text) for para in paras for w in para.split()}
    assert body_words == {w for p in passages for w in p.text.split()}


def test_a_jsonl_document_line_over_the_bound_and_deep_json_are_one_line(tmp_path, monkeypatch):
    import ragtrain.readers as readers

    monkeypatch.setattr(readers, "MAX_LINE_BYTES", 64)
    path = tmp_path / "docs.jsonl"
    path.write_text(json.dumps({"text": "short"}) + "\n" + json.dumps({"text": "long " * 40}) + "\n")
    with pytest.raises(UserError, match=r"docs\.jsonl:2: line longer than"):
        read_documents((path,), Fields(), Counter())
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(UserError, match=r"deep\.json:1: JSON nested too deeply"):
        read_documents((deep,), Fields(), Counter())


def test_load_passages_reads_splits_and_deduplicates_with_counts(tmp_path):
    from ragtrain.documents import load_passages

    (tmp_path / "a.md").write_text("# A\n\nSame paragraph here.\n\nOther words in this one.\n")
    (tmp_path / "b.md").write_text("# B\n\nsame   paragraph HERE.\n")
    counts: Counter = Counter()
    passages = load_passages((tmp_path,), Fields(), max_words=5, overlap=0, counts=counts)
    assert [p.text for p in passages] == ["Same paragraph here.", "Other words in this one."]
    assert counts["passages_split"] == 3 and counts["passages_duplicate_normalised"] == 1 and counts["passages"] == 2
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no usable documents"):
        load_passages((tmp_path / "empty",), Fields(), 200, 32, Counter())
