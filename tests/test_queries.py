"""Label-free queries: informative headings and short documents' titles, inverse cloze and cropping, each query
with the passage it finds and the text the evaluation corpus holds when it is held out."""

from __future__ import annotations

import random

from ragtrain.data.documents import Passage
from ragtrain.data.queries import (
    MAX_CROP_QUERY_WORDS,
    MIN_QUERY_WORDS,
    cloze_query,
    crop_query,
    heading_queries,
    is_informative,
    is_prose,
    make_queries,
)

PROSE = ("Bread dough rises when yeast eats sugar. A hot oven bakes the loaf until the crust is brown. "
         "Water and flour make the dough before it rests overnight.")


def passage(doc: str, section: str, text: str = PROSE, title: str = "Baking bread at home") -> Passage:
    return Passage(f"{doc}#{section}", doc, title, section, text)


def test_prose_is_mostly_words_and_a_heading_informs_when_it_is_specific():
    assert is_prose("the cat sat on the mat.") and not is_prose("x = f(3) + 4 * 7")
    assert is_informative("Proofing the dough") and not is_informative("Introduction") and not is_informative("Usage")
    assert not is_informative("Overview") and not is_informative("Dough")  # one word says too little


def test_a_heading_finds_its_sections_first_passage_and_a_short_documents_title_is_a_title_query():
    passages = [passage("a", "Proofing the dough"), passage("a", "Proofing the dough", "More about proofing."),
                passage("a", "References"), passage("b", "Baking bread at home")]  # b's only heading is its title
    queries = heading_queries(passages)
    headings = [(q.text, q.positive, q.relevant) for q in queries if q.strategy == "heading"]
    assert headings == [("Proofing the dough", 0, (0, 1))]  # not 'References', not b's heading that is its title
    titles = [(q.text, q.positive, q.relevant) for q in queries if q.strategy == "title"]
    assert titles == [("Baking bread at home", 0, (0, 1, 2)), ("Baking bread at home", 3, (3,))]  # both short
    longer = passages[:3] + [passage("a", "Shaping", "Shape it.")] + passages[3:]  # a: 4 passages, too long
    assert [q.relevant for q in heading_queries(longer) if q.strategy == "title"] == [(4,)]


def test_cloze_takes_a_sentence_out_and_the_held_out_text_never_holds_it():
    query = cloze_query(passage("a", "s"), 7, keep_probability=0.0, rng=random.Random(1))
    assert query.strategy == "cloze" and query.positive == 7 and query.relevant == (7,)
    assert query.text in PROSE and query.text not in query.positive_text and query.text not in query.eval_text
    kept = cloze_query(passage("a", "s"), 7, keep_probability=1.0, rng=random.Random(1))
    assert kept.positive_text == PROSE and kept.text not in kept.eval_text  # kept in training, not in evaluation
    assert cloze_query(passage("a", "s", "One sentence only here."), 0, 0.0, random.Random(0)) is None


def test_a_crop_is_a_short_span_whose_words_leave_the_held_out_text():
    words = PROSE.split()
    for seed in range(20):
        query = crop_query(passage("a", "s"), 0, random.Random(seed))
        if query is None:  # a span that is not prose
            continue
        length = len(query.text.split())
        assert MIN_QUERY_WORDS <= length <= MAX_CROP_QUERY_WORDS and query.text in " ".join(words)
        assert len(query.eval_text.split()) == len(words) - length and query.positive_text in PROSE
    assert crop_query(passage("a", "s", "too short to crop"), 0, random.Random(0)) is None


def test_make_queries_is_seeded_and_gives_each_passage_at_most_one_span_query():
    passages = [passage("a", "Proofing the dough"), passage("b", "Shaping the loaf")]
    first = make_queries(passages, ("cloze", "crop", "heading"), 0.1, random.Random(3))
    assert first == make_queries(passages, ("cloze", "crop", "heading"), 0.1, random.Random(3))
    spans = [q for q in first if q.strategy in ("cloze", "crop")]
    assert sorted(q.positive for q in spans) == [0, 1]
    assert {q.strategy for q in make_queries(passages, ("heading",), 0.1, random.Random(3))} <= {"heading", "title"}
