"""JSON and JSONL files read with line numbers, and rows written as JSONL text: a malformed line, bytes that are not
UTF-8 or a line too long to be a record is one UserError naming the file and line. Data files (triples, pairs,
documents, BEIR folders, configs) are read through here; ragtrain's own small records (a manifest, a checkpoint's
state) are read where they are used."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from ragtrain.errors import UserError
from ragtrain.files.atomic import atomic_write_with

# One line of a JSONL file (a triple, a pair, a document, a query) is at most this long. Longer is a broken
# file, not data: without a bound a file of 16 triples once took 6.7 GB of memory before failing.
MAX_LINE_BYTES = 16 * 2**20


def read_jsonl(path: Path, what: str = "file") -> list[dict[str, Any]]:
    """Read a JSONL file; a malformed line is a UserError naming the file and line number."""
    return [row for _, row in read_numbered_jsonl(path, what)]


def numbered_lines(path: Path, what: str = "file") -> Iterator[tuple[int, str]]:
    """(line number, text) of each line, read in bounded pieces: a line over MAX_LINE_BYTES, or bytes that
    are not UTF-8, are a UserError naming the file and line (never the whole file in memory)."""
    if not path.is_file():
        raise UserError(f"{what} {path} not found")
    with open_for_reading(path) as handle:
        for number, raw in enumerate(iter(lambda: handle.readline(MAX_LINE_BYTES + 1), b""), start=1):
            if len(raw) > MAX_LINE_BYTES:
                raise _too_long(path, number)
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise UserError(f"{path}:{number}: not UTF-8 text (byte {raw[exc.start]:#04x} at column "
                                f"{exc.start + 1}); save the file as UTF-8") from None
            yield number, text


def open_for_reading(path: Path):
    """The file opened in binary; a file that cannot be read (permissions, a folder) is a UserError."""
    try:
        return path.open("rb")
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}; check the path and its permissions") from None


def lenient_lines(path: Path) -> Iterator[tuple[int, str, int]]:
    """(line number, text, characters replaced) of each line of a document file, read in bounded pieces as
    `numbered_lines` reads them, except that bytes which are not UTF-8 become U+FFFD (counted) instead of stopping."""
    with open_for_reading(path) as handle:
        for number, raw in enumerate(iter(lambda: handle.readline(MAX_LINE_BYTES + 1), b""), start=1):
            if len(raw) > MAX_LINE_BYTES:
                raise _too_long(path, number)
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8", errors="replace")
            yield number, text, text.count("\ufffd") - raw.count("\ufffd".encode())


def _too_long(path: Path, number: int) -> UserError:
    return UserError(f"{path}:{number}: line longer than {MAX_LINE_BYTES // 2**20} MiB; one line holds one record "
                     "(a broken file, or a text to split into several records)")


def jsonl_values(lines: Iterable[tuple[int, str]], path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, JSON value) of each non-blank line; one that is not JSON is a UserError naming it."""
    for number, line in lines:
        if line.strip():
            yield number, parse_json(line.rstrip("\r\n"), path, number, "fix or remove that line")


def read_numbered_jsonl(path: Path, what: str = "file") -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line, so later checks can name the line too."""
    return list(iter_numbered_jsonl(path, what))


def iter_numbered_jsonl(path: Path, what: str = "file") -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line, a line at a time (a corpus of a million rows is never a list)."""
    for number, row in jsonl_values(numbered_lines(path, what), path):
        if not isinstance(row, dict):
            raise UserError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
        yield number, row


def parse_json(text: str, path: Path, start_line: int | None = None, fix: str = "fix the file",
               object_pairs_hook=None) -> Any:
    """The JSON value in `text`, which starts at line `start_line` of `path` (None: `text` is the whole file).
    Invalid or absurdly nested JSON is a UserError naming the file and line, and saying `fix`."""
    try:
        return json.loads(text, object_pairs_hook=object_pairs_hook)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{(start_line or 1) + exc.lineno - 1}: not valid JSON ({exc.msg}); {fix}") from None
    except RecursionError:
        raise UserError(f"{path}{f':{start_line}' if start_line else ''}: JSON nested too deeply; {fix}") from None


def read_utf8(path: Path, not_utf8: str) -> str:
    """A whole file as text (UTF-8, a byte-order mark dropped); `not_utf8` is the UserError's line when it is not."""
    with open_for_reading(path) as handle:
        raw = handle.read()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(not_utf8) from None


def read_json(path: Path, object_pairs_hook=None) -> Any:
    """Parse a whole JSON file (UTF-8); undecodable bytes or invalid JSON are a UserError naming the file."""
    with open_for_reading(path) as handle:
        raw = handle.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start}); "
                        "save the file as UTF-8") from None
    return parse_json(text, path, object_pairs_hook=object_pairs_hook)


def jsonl_text(rows: list[dict[str, Any]]) -> str:
    """Rows as JSONL text: stable key order and no ASCII escaping, so equal inputs give equal bytes."""
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Rows to `path` as JSONL (as `jsonl_text` writes them), a row at a time as they come, through a temporary
    renamed at the end; the number of rows written."""
    written = 0

    def write(handle: BinaryIO) -> None:
        nonlocal written
        for row in rows:
            handle.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
            written += 1

    atomic_write_with(path, write)
    return written
