"""Label-free queries for passages: inverse cloze, independent cropping, and section headings / titles.

Each query names the passage it came from, the text to train on as its positive, and the passage text the
evaluation corpus holds when the query is held out (the query sentence or span removed, so an evaluation
query never appears verbatim in the passage it should find).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ragtrain.data.documents import Passage, sentences_of
from ragtrain.messages import Progress

# Headings that say nothing about their section: as queries they would match every document alike.
GENERIC_HEADINGS = {
    "abstract", "introduction", "overview", "summary", "background", "motivation", "rationale", "conclusion",
    "conclusions", "discussion", "references", "reference", "copyright", "footnotes", "notes", "appendix",
    "acknowledgements", "acknowledgments", "specification", "examples", "example", "usage", "contents",
    "table of contents", "see also", "resolution", "open issues", "rejected ideas", "changelog", "license",
    "implementation", "reference implementation", "backwards compatibility", "security implications",
    "how to teach this", "related work", "results", "methods", "further reading", "faq", "todo", "status",
}
MIN_QUERY_WORDS, MAX_QUERY_WORDS = 4, 40
MIN_CROP_PASSAGE_WORDS = 16
MAX_CROP_QUERY_WORDS = 32  # a crop query is a tenth to three tenths of its passage, but never longer than this
PROSE_SHARE = 0.6  # of a text's tokens that must be words for it to read as prose, not code or numbers
TITLE_QUERY_MAX_PASSAGES = 3  # a title describes a short document; in a long one it fits no passage best


@dataclass(frozen=True, slots=True)  # slots: a query per passage, a million of them
class Query:
    """A query and how its texts come from its passage. The positive and evaluation texts are made when asked for,
    from the passage text (held by reference) and `cut`, so a million queries hold no copy of the corpus."""

    text: str
    positive: int  # index of the passage the query came from
    passage_text: str  # that passage's text
    relevant: tuple[int, ...]  # passages judged relevant for this query in the evaluation qrels
    strategy: str  # cloze, crop, heading, title or llm
    cut: tuple[int, ...] = ()  # cloze: (sentence, kept in the positive); crop: (query start, length, positive start, length)

    @property
    def positive_text(self) -> str:
        """What the triple trains on as the positive."""
        if self.strategy == "cloze":
            sentence, keep = self.cut
            return self.passage_text if keep else _without_sentence(self.passage_text, sentence)
        if self.strategy == "crop":
            _, _, start, length = self.cut
            return " ".join(self.passage_text.split()[start : start + length])
        return self.passage_text

    @property
    def eval_text(self) -> str:
        """The passage text in the evaluation corpus if this query is held out: without the query's sentence or span."""
        if self.strategy == "cloze":
            return _without_sentence(self.passage_text, self.cut[0])
        if self.strategy == "crop":
            start, length, _, _ = self.cut
            words = self.passage_text.split()
            return " ".join(words[:start] + words[start + length :])
        return self.passage_text


def _without_sentence(text: str, sentence: int) -> str:
    return " ".join(s for n, s in enumerate(sentences_of(text)) if n != sentence)


def is_prose(text: str) -> bool:
    """Mostly words rather than code or numbers: at least PROSE_SHARE of its tokens are alphabetic."""
    tokens = text.split()
    return bool(tokens) and sum(t.strip(".,;:!?()[]\"'").isalpha() for t in tokens) >= PROSE_SHARE * len(tokens)


def is_informative(heading: str) -> bool:
    words = heading.split()
    return len(words) >= 2 and heading.lower().strip(" :.") not in GENERIC_HEADINGS and is_prose(heading)


def make_queries(passages: list[Passage], strategies: tuple[str, ...], keep_probability: float,
                 rng: random.Random) -> list[Query]:
    """Up to one cloze or crop query per passage, plus one heading query per informative section."""
    queries = heading_queries(passages) if "heading" in strategies else []
    span_strategies = [s for s in strategies if s in ("cloze", "crop")]
    with Progress(len(passages) if span_strategies else 0, "making queries", "passages") as progress:
        for index, passage in enumerate(passages):
            order = rng.sample(span_strategies, len(span_strategies))  # a fair mix, falling back to the other
            for strategy in order:
                query = (cloze_query(passage, index, keep_probability, rng) if strategy == "cloze"
                         else crop_query(passage, index, rng))
                if query is not None:
                    queries.append(query)
                    break
            progress.update()
    return queries


def heading_queries(passages: list[Passage]) -> list[Query]:
    """A section heading finds the first passage of its section; every passage of the section is relevant.
    A short document's title is a query too, marked 'title' (kept out of evaluation: the corpus has titles)."""
    groups: dict[tuple[str, str], list[int]] = {}
    documents: dict[str, list[int]] = {}
    for index, passage in enumerate(passages):
        groups.setdefault((passage.doc_id, passage.section), []).append(index)
        documents.setdefault(passage.doc_id, []).append(index)
    queries = []
    for (doc_id, section), members in groups.items():
        first = passages[members[0]]
        if is_informative(section) and section.lower() != first.title.lower():
            queries.append(Query(section, members[0], first.text, tuple(members), "heading"))
    for doc_id, members in documents.items():
        first = passages[members[0]]
        if len(members) <= TITLE_QUERY_MAX_PASSAGES and is_informative(first.title):
            queries.append(Query(first.title, members[0], first.text, tuple(members), "title"))
    return queries


def cloze_query(passage: Passage, index: int, keep_probability: float, rng: random.Random) -> Query | None:
    """Inverse cloze: one sentence is the query; the positive is the rest (or, with `keep_probability`, all)."""
    sentences = sentences_of(passage.text)
    usable = [n for n, s in enumerate(sentences) if MIN_QUERY_WORDS <= len(s.split()) <= MAX_QUERY_WORDS and is_prose(s)]
    if len(sentences) < 2 or not usable:
        return None
    chosen = rng.choice(usable)
    keep = rng.random() < keep_probability
    return Query(sentences[chosen], index, passage.text, (index,), "cloze", (chosen, int(keep)))


def crop_query(passage: Passage, index: int, rng: random.Random) -> Query | None:
    """Independent cropping: a short random span is the query, a long random span of the passage the positive."""
    words = passage.text.split()
    n = len(words)
    if n < MIN_CROP_PASSAGE_WORDS:
        return None
    longest = min(MAX_CROP_QUERY_WORDS, (3 * n) // 10)
    query_len = rng.randint(max(MIN_QUERY_WORDS, n // 10), max(MIN_QUERY_WORDS, longest))
    query_start = rng.randrange(n - query_len + 1)
    positive_len = rng.randint(n // 2, n)
    positive_start = rng.randrange(n - positive_len + 1)
    query = " ".join(words[query_start : query_start + query_len])
    if not is_prose(query):
        return None
    return Query(query, index, passage.text, (index,), "crop", (query_start, query_len, positive_start, positive_len))
