"""Read files into documents: plain text (.txt .md .rst), HTML (visible text), JSON/JSONL and CSV/TSV rows.

Bytes that are not UTF-8 are replaced and counted; empty and binary files are skipped and counted. A field
named with --text-field/--title-field/--id-field that no row has is a UserError, since it is a typo.
"""

from __future__ import annotations

import csv
import re
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from ragtrain.errors import UserError
from ragtrain.files.jsonfiles import jsonl_values, lenient_lines, open_for_reading, parse_json

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst", ".text"}
HTML_SUFFIXES = {".html", ".htm"}
ROW_SUFFIXES = {".jsonl", ".json", ".csv", ".tsv"}
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | ROW_SUFFIXES
BINARY_SNIFF_BYTES = 8192  # a NUL byte among a file's first bytes marks it as binary
FRONT_MATTER_LINES = 40  # a YAML front matter ('---' ... '---') closes within this many lines, or is none
MIN_HEADER_FIELDS = 3  # 'Key: value' lines that make a header block (PEPs, e-mails); fewer are text
HEADING_SEARCH_LINES = 200  # a document's title, when it has one, is a heading among its first lines
MIN_UNDERLINE = 3  # '===' under a line makes it a heading (reStructuredText)
FIELDS_SHOWN = 12  # of a file's fields, when the one asked for is missing


@dataclass(frozen=True)
class Document:
    doc_id: str
    title: str
    text: str  # markdown-like text: '#' headings, blank lines between paragraphs, ``` fences around code


@dataclass(frozen=True)
class Fields:
    text: str = "text"
    title: str = "title"
    id: str = "_id"

    @classmethod
    def of(cls, options) -> "Fields":
        """The JSON fields or CSV columns that prepare-data's --text-field, --title-field and --id-field name."""
        return cls(options.text_field, options.title_field, options.id_field)


def find_files(inputs: tuple[Path, ...]) -> list[tuple[Path, str]]:
    """(file, name) for every supported file under the inputs, folders recursively, sorted.

    The name is the path relative to the folder given (or the file name), so ids do not depend on where
    the inputs live on disk.
    """
    files: list[tuple[Path, str]] = []
    for path in inputs:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES)
            files.extend((p, p.relative_to(path).as_posix()) for p in found)
        elif path.is_file():
            files.append((path, path.name))
        else:
            raise UserError(f"input {path} not found; check the path")
    return files


def decode(data: bytes, counts: Counter) -> str:
    """UTF-8 text; invalid bytes become U+FFFD and are counted instead of stopping the run."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("utf-8-sig", errors="replace")
        counts["files_not_utf8"] += 1
        counts["characters_replaced"] += text.count("\ufffd") - data.count("\ufffd".encode())
        return text


def read_file(path: Path, name: str, fields: Fields, counts: Counter) -> Iterator[Document]:
    """The documents of one file, in order. A .jsonl file is read a line at a time (one document in memory, however
    large the file); the others whole."""
    with open_for_reading(path) as handle:
        head = handle.read(BINARY_SNIFF_BYTES)
    if b"\x00" in head:
        counts["files_skipped_binary"] += 1
        return
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        documents = rows_to_documents(_jsonl_rows(path, counts), path, name, fields)
    else:
        text = decode(path.read_bytes(), counts)
        documents = iter(_whole_file_documents(text, path, name, suffix, fields) if text.strip() else ())
    read = 0
    for document in documents:
        if document.text.strip():
            read += 1
            yield document
    counts["files_skipped_empty" if not read else "files_read"] += 1


def _whole_file_documents(text: str, path: Path, name: str, suffix: str, fields: Fields) -> Iterable[Document]:
    if suffix in HTML_SUFFIXES:
        return [html_document(text, name)]
    if suffix == ".json":
        return rows_to_documents(_json_rows(text, path), path, name, fields)
    if suffix in {".csv", ".tsv"}:
        return rows_to_documents(_csv_rows(text, path, suffix), path, name, fields)
    return [text_document(text, name)]


def _jsonl_rows(path: Path, counts: Counter) -> Iterator[dict]:
    """The objects of a .jsonl file's lines, a line at a time (other values skipped); bytes that are not UTF-8 are
    replaced and counted as `decode` counts a whole file's."""
    replaced = Counter()

    def lines() -> Iterator[tuple[int, str]]:
        for number, text, bad in lenient_lines(path):
            replaced["characters"] += bad
            yield number, text

    for _, row in jsonl_values(lines(), path):
        if isinstance(row, dict):
            yield row
    if replaced["characters"]:
        counts["files_not_utf8"] += 1
        counts["characters_replaced"] += replaced["characters"]


# ------------------------------------------------------------------------------------------ plain text
_FIELD_LINE = re.compile(r"^([A-Za-z][\w-]*):\s*(.*)$")


def text_document(text: str, name: str) -> Document:
    """A text file; a leading 'Key: value' header block (PEPs, emails) or YAML front matter gives the title."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    header, body = _split_header(text)
    title = header.get("title") or _first_heading(body) or Path(name).stem.replace("-", " ").replace("_", " ")
    return Document(name, title.strip(), body)


def _split_header(text: str) -> tuple[dict[str, str], str]:
    lines = text.split("\n")
    if lines and lines[0].strip() == "---" and "---" in (line.strip() for line in lines[1:FRONT_MATTER_LINES]):
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
        fields = {m.group(1).lower(): m.group(2).strip(" \"'") for m in map(_FIELD_LINE.match, lines[1:end]) if m}
        return fields, "\n".join(lines[end + 1 :])
    fields: dict[str, str] = {}
    end = 0
    while end < len(lines) and (match := _FIELD_LINE.match(lines[end])):
        fields[match.group(1).lower()] = match.group(2).strip()
        end += 1
        while end < len(lines) and lines[end][:1] in {" ", "\t"} and lines[end].strip():
            end += 1  # a continuation line of the field above
    if len(fields) >= MIN_HEADER_FIELDS and (end == len(lines) or not lines[end].strip()):
        return fields, "\n".join(lines[end:])
    return {}, text


def _first_heading(text: str) -> str:
    lines = text.split("\n")
    for i, line in enumerate(lines[:HEADING_SEARCH_LINES]):
        if line.startswith("#"):
            return line.lstrip("#").strip()
        under = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if line.strip() and len(under) >= MIN_UNDERLINE and len(set(under)) == 1 and under[0] in "=-~^*#":
            return line.strip()
    return ""


# ------------------------------------------------------------------------------------------------ HTML
class _VisibleText(HTMLParser):
    """Visible text as markdown-like lines: headings as '#', <pre> as fenced code, list items as '- '."""

    HIDDEN = {"script", "style", "noscript", "template", "head", "svg", "iframe"}
    BLOCKS = {"p", "div", "section", "article", "main", "header", "footer", "table", "tr", "ul", "ol",
              "blockquote", "dl", "dt", "dd", "figure", "nav", "aside", "form"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self.hidden = 0
        self.in_title = False
        self.in_pre = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.HIDDEN:
            self.hidden += 1
        elif tag == "title":
            self.in_title = True
        elif re.fullmatch(r"h[1-6]", tag):
            self.parts.append("\n\n" + "#" * int(tag[1]) + " ")
        elif tag == "pre":
            self.in_pre += 1
            self.parts.append("\n\n```\n")
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag in {"br", "td", "th"}:
            self.parts.append("\n" if tag == "br" else " ")
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_endtag(self, tag):
        if tag in self.HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag == "title":
            self.in_title = False
        elif tag == "pre":
            self.in_pre = max(0, self.in_pre - 1)
            self.parts.append("\n```\n\n")
        elif re.fullmatch(r"h[1-6]", tag) or tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_data(self, data):
        if self.in_title:
            self.title += data
        elif not self.hidden:
            self.parts.append(data if self.in_pre else re.sub(r"\s+", " ", data))


def html_document(html: str, name: str) -> Document:
    parser = _VisibleText()
    parser.feed(html)
    parser.close()
    lines, in_code = [], False
    for line in "".join(parser.parts).split("\n"):
        in_code ^= line.startswith("```")
        lines.append(line.rstrip() if in_code else line.strip())  # code keeps its indentation
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    title = " ".join(parser.title.split()) or _first_heading(text) or Path(name).stem
    return Document(name, title, text)


# ------------------------------------------------------------------------------------- JSON, JSONL, CSV
def _json_rows(text: str, path: Path) -> list[dict]:
    """The objects of a .json file (one, or a list of them); other values are skipped."""
    data = parse_json(text, path, 1)
    return [row for row in (data if isinstance(data, list) else [data]) if isinstance(row, dict)]


def _csv_rows(text: str, path: Path, suffix: str) -> list[dict]:
    csv.field_size_limit(sys.maxsize)
    return list(csv.DictReader(text.splitlines(), delimiter="\t" if suffix == ".tsv" else ","))


def rows_to_documents(rows: Iterable[dict], path: Path, name: str, fields: Fields) -> Iterator[Document]:
    """One document per row, as the rows come; rows without text are dropped. A field no row has is a typo: a
    UserError once the rows are read."""
    seen: set = set()
    for number, row in enumerate(rows, start=1):
        seen.update(row.keys())
        text = row.get(fields.text)
        if not isinstance(text, str) or not text.strip():
            continue
        row_id = row.get(fields.id)
        doc_id = str(row_id) if row_id not in (None, "") else f"{name}#{number}"
        yield Document(" ".join(doc_id.split()), str(row.get(fields.title) or "").strip(), text)
    if not seen:
        return
    # The text field must exist; a title or id field only when the user named one (the defaults are optional).
    named = [("--text-field", fields.text)]
    named += [("--title-field", fields.title)] if fields.title != Fields.title else []
    named += [("--id-field", fields.id)] if fields.id != Fields.id else []
    for option, field in named:
        if field not in seen:
            raise UserError(f"{path} has no field {field!r} (it has {', '.join(map(repr, sorted(map(str, seen))[:FIELDS_SHOWN]))}); "
                            f"pass {option} with one of those")
