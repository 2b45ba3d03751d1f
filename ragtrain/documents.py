"""Read raw documents from files and folders, and split them into passages along their structure."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from ragtrain.errors import UserError
from ragtrain.fileio import read_jsonl

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst"}
JSON_SUFFIXES = {".jsonl"}
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | JSON_SUFFIXES


@dataclass(frozen=True)
class Document:
    doc_id: str
    title: str
    text: str
    source: str


@dataclass(frozen=True)
class Passage:
    passage_id: str
    doc_id: str
    title: str
    section: str
    text: str


def find_files(inputs: tuple[Path, ...]) -> list[Path]:
    """Every supported file under the inputs, folders recursively, in a stable (sorted) order."""
    files: list[Path] = []
    for path in inputs:
        if path.is_dir():
            files.extend(p for p in sorted(path.rglob("*")) if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES)
        elif path.is_file():
            files.append(path)
        else:
            raise UserError(f"input {path} not found; check the path")
    return files


def read_documents(files: list[Path]) -> list[Document]:
    documents: list[Document] = []
    for path in files:
        if path.suffix.lower() in JSON_SUFFIXES:
            documents.extend(_read_jsonl_documents(path))
        else:
            text = path.read_bytes().decode("utf-8", errors="replace")
            if text.strip():
                documents.append(Document(_stable_id(str(path)), _title_of(text, path), text, str(path)))
    return documents


def _read_jsonl_documents(path: Path) -> list[Document]:
    documents = []
    for index, row in enumerate(read_jsonl(path, "document file")):
        text = str(row.get("text") or "")
        if not text.strip():
            continue
        doc_id = str(row.get("_id", f"{path.stem}-{index}"))
        documents.append(Document(doc_id, str(row.get("title") or ""), text, str(path)))
    return documents


def _stable_id(source: str) -> str:
    return hashlib.sha1(source.encode()).hexdigest()[:12]


def _title_of(text: str, path: Path) -> str:
    """The first markdown heading or first non-empty line, else the file name."""
    for line in text.splitlines():
        line = line.strip()
        if line and not set(line) <= set("=-~*#^\"'`"):
            return line.lstrip("#").strip()
    return path.stem.replace("-", " ").replace("_", " ")


_MD_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`*+#])\1{2,}\s*$")


def sections_of(text: str) -> list[tuple[str, list[str]]]:
    """Split text into (heading, paragraphs). Markdown `#` headings and reStructuredText underlines count."""
    sections: list[tuple[str, list[str]]] = [("", [])]
    lines = text.replace("\r\n", "\n").split("\n")
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph and any(line.strip() for line in paragraph):
            sections[-1][1].append("\n".join(paragraph).strip())
        paragraph.clear()

    for i, line in enumerate(lines):
        heading = _MD_HEADING.match(line)
        next_line = lines[i + 1] if i + 1 < len(lines) else ""
        if heading:
            flush()
            sections.append((heading.group(2).strip(), []))
        elif line.strip() and _RST_UNDERLINE.match(next_line) and len(next_line.strip()) >= len(line.strip()):
            flush()
            sections.append((line.strip(), []))
        elif _RST_UNDERLINE.match(line):
            continue
        elif not line.strip():
            flush()
        else:
            paragraph.append(line)
    flush()
    return [(heading, paras) for heading, paras in sections if paras]


def split_passages(document: Document, max_words: int, overlap: int) -> list[Passage]:
    """Pack paragraphs of each section into passages of at most `max_words` words.

    A paragraph longer than the limit is cut into windows that share `overlap` words.
    """
    passages: list[Passage] = []
    for heading, paragraphs in sections_of(document.text):
        for chunk in _pack(paragraphs, max_words, overlap):
            passage_id = f"{document.doc_id}-{len(passages)}"
            passages.append(Passage(passage_id, document.doc_id, document.title, heading, chunk))
    return passages


def _pack(paragraphs: list[str], max_words: int, overlap: int) -> list[str]:
    chunks: list[str] = []
    current: list[str] = []
    current_words = 0
    for paragraph in paragraphs:
        words = paragraph.split()
        if len(words) > max_words:
            if current:
                chunks.append("\n\n".join(current))
                current, current_words = [], 0
            step = max_words - overlap
            for start in range(0, len(words) - overlap, step):
                chunks.append(" ".join(words[start : start + max_words]))
            continue
        if current_words + len(words) > max_words and current:
            chunks.append("\n\n".join(current))
            current, current_words = [], 0
        current.append(paragraph)
        current_words += len(words)
    if current:
        chunks.append("\n\n".join(current))
    return chunks
