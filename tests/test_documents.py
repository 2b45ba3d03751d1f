"""Documents: reading every input in order, the structure-aware chunker (with hypothesis properties) and
deduplication."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragtrain.data.documents import Passage, deduplicate, load_passages, read_documents, sections_of, split_passages
from ragtrain.data.readers import Document, Fields
from ragtrain.errors import UserError


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


def test_load_passages_reads_splits_and_deduplicates_with_counts(tmp_path):
    (tmp_path / "a.md").write_text("# A\n\nSame paragraph here.\n\nOther words in this one.\n")
    (tmp_path / "b.md").write_text("# B\n\nsame   paragraph HERE.\n")
    counts: Counter = Counter()
    passages = load_passages((tmp_path,), Fields(), max_words=5, overlap=0, counts=counts)
    assert [p.text for p in passages] == ["Same paragraph here.", "Other words in this one."]
    assert counts["passages_split"] == 3 and counts["passages_duplicate_normalised"] == 1 and counts["passages"] == 2
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no usable documents"):
        load_passages((tmp_path / "empty",), Fields(), 200, 32, Counter())
