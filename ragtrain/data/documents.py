"""Documents from files, split along their structure (sections, paragraphs, lines, sentences) into passages."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ragtrain.data.readers import Document, Fields, find_files, read_file
from ragtrain.errors import UserError
from ragtrain.messages import Progress


@dataclass(frozen=True, slots=True)  # slots: a million passages, no dict each
class Passage:
    passage_id: str
    doc_id: str
    title: str
    section: str  # the heading the passage sits under ("" before the first heading)
    text: str


def iter_documents(inputs: tuple[Path, ...], fields: Fields, counts: Counter) -> Iterator[Document]:
    """Every document under the inputs, in sorted file order, one at a time; a repeated id gets a '~n' suffix."""
    seen: Counter = Counter()
    files = find_files(inputs)
    counts["files"] += len(files)
    with Progress(None, "reading", "documents") as progress:
        for path, name in files:
            for doc in read_file(path, name, fields, counts):
                seen[doc.doc_id] += 1
                if seen[doc.doc_id] > 1:
                    counts["documents_renamed_duplicate_id"] += 1
                    doc = Document(f"{doc.doc_id}~{seen[doc.doc_id]}", doc.title, doc.text)
                counts["documents"] += 1
                progress.update()
                yield doc


def read_documents(inputs: tuple[Path, ...], fields: Fields, counts: Counter) -> list[Document]:
    return list(iter_documents(inputs, fields, counts))


def load_passages(inputs: tuple[Path, ...], fields: Fields, max_words: int, overlap: int, counts: Counter) -> list[Passage]:
    """Read, split and deduplicate a document at a time (only the passages kept stay in memory); no usable document
    is a UserError."""
    kept, unique = [], Deduplicator(counts)
    for doc in iter_documents(inputs, fields, counts):
        for passage in split_passages(doc, max_words, overlap):
            counts["passages_split"] += 1
            if unique.first(passage.text):
                kept.append(passage)
    if not counts["documents"]:
        raise UserError(f"no usable documents in {', '.join(map(str, inputs))} (every file was empty, "
                        "binary or unsupported); pass .txt, .md, .rst, .html, .jsonl, .json, .csv or .tsv with text")
    counts["passages"] += len(kept)
    return kept


_MD_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`*+#:.])\1{2,}\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")


def sections_of(text: str) -> list[tuple[str, list[str]]]:
    """(heading, paragraphs) in order. Markdown '#' headings and reStructuredText underlined titles start
    a section; a fenced code block is one paragraph even with blank lines inside; lines keep their breaks
    and indentation, so lists and code stay readable."""
    sections: list[tuple[str, list[str]]] = [("", [])]
    lines = text.replace("\r\n", "\n").split("\n")
    paragraph: list[str] = []
    fence = ""

    def flush() -> None:
        if any(line.strip() for line in paragraph):
            sections[-1][1].append("\n".join(paragraph).strip("\n"))
        paragraph.clear()

    for i, line in enumerate(lines):
        following = lines[i + 1] if i + 1 < len(lines) else ""
        if fence:  # inside a code block: everything is code until the closing fence
            paragraph.append(line)
            if line.strip().startswith(fence):
                fence = ""
                flush()
        elif (match := _FENCE.match(line)) and not (i and lines[i - 1].strip()):  # '~~~' under text is an underline
            flush()
            fence = match.group(1)
            paragraph.append(line)
        elif heading := _MD_HEADING.match(line):
            flush()
            sections.append((heading.group(2).strip(), []))
        elif _RST_UNDERLINE.match(line):
            continue  # an underline (or overline) of a title
        elif line.strip() and _RST_UNDERLINE.match(following) and len(following.strip()) >= len(line.strip()):
            flush()
            sections.append((line.strip(), []))
        elif not line.strip():
            flush()
        else:
            paragraph.append(line)
    flush()
    return [(heading, paras) for heading, paras in sections if paras]


def split_passages(document: Document, max_words: int, overlap: int) -> list[Passage]:
    """Pack each section's paragraphs into passages of at most `max_words` words.

    A paragraph over the limit is cut at line breaks, then sentence ends, then into word windows that
    share `overlap` words; passages never cross a section boundary.
    """
    passages: list[Passage] = []
    for heading, paragraphs in sections_of(document.text):
        units = [unit for paragraph in paragraphs for unit in _fit(paragraph, max_words, overlap)]
        for chunk in _pack(units, max_words):
            passages.append(Passage(f"{document.doc_id}#{len(passages)}", document.doc_id, document.title,
                                    heading, chunk))
    return passages


def _fit(paragraph: str, max_words: int, overlap: int) -> list[str]:
    """The paragraph as pieces of at most `max_words` words, cut at the largest structure that fits."""
    if len(paragraph.split()) <= max_words:
        return [paragraph]
    lines = paragraph.split("\n")
    pieces = lines if len(lines) > 1 else _SENTENCE_END.split(paragraph)
    if len(pieces) > 1:
        separator = "\n" if len(lines) > 1 else " "
        fitted = [p for piece in pieces if piece.strip() for p in _fit(piece, max_words, overlap)]
        return _pack(fitted, max_words, separator)
    words = paragraph.split()
    step = max_words - overlap
    return [" ".join(words[start : start + max_words]) for start in range(0, max(len(words) - overlap, 1), step)]


def _pack(units: list[str], max_words: int, separator: str = "\n\n") -> list[str]:
    """Greedily join consecutive units (each within the limit) while the total stays within `max_words`."""
    chunks: list[str] = []
    current: list[str] = []
    current_words = 0
    for unit in units:
        words = len(unit.split())
        if current and current_words + words > max_words:
            chunks.append(separator.join(current))
            current, current_words = [], 0
        current.append(unit)
        current_words += words
    if current:
        chunks.append(separator.join(current))
    return chunks


def normalise(text: str) -> str:
    return " ".join(text.lower().split())


class Deduplicator:
    """Which texts were seen before, exactly or up to case and whitespace: the exact ones by reference to the text
    kept anyway, the normalised ones by a 16-byte digest, so no second copy of the corpus is held."""

    def __init__(self, counts: Counter):
        self.exact: set[str] = set()
        self.normalised: set[bytes] = set()
        self.counts = counts

    def first(self, text: str) -> bool:
        """Whether `text` is new; a repeat is counted by kind."""
        key = hashlib.blake2b(normalise(text).encode("utf-8"), digest_size=16).digest()
        if text in self.exact or key in self.normalised:
            self.counts["passages_duplicate_exact" if text in self.exact else "passages_duplicate_normalised"] += 1
            return False
        self.exact.add(text)
        self.normalised.add(key)
        return True


def deduplicate(passages: list[Passage], counts: Counter) -> list[Passage]:
    """Drop passages whose text equals an earlier one up to case and whitespace; the first one stays."""
    unique = Deduplicator(counts)
    return [passage for passage in passages if unique.first(passage.text)]


def sentences_of(text: str) -> list[str]:
    """Sentences of prose (line breaks count as spaces); a text with no sentence ends is one sentence."""
    return [s.strip() for s in _SENTENCE_END.split(" ".join(text.split())) if s.strip()]
