"""Small file helpers: JSONL reading with line numbers, and atomic writes (temporary name, then rename)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ragtrain.errors import UserError


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
                raise UserError(f"{path}:{number}: line longer than {MAX_LINE_BYTES // 2**20} MiB; one line holds "
                                "one record (a broken file, or a text to split into several records)")
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


def read_numbered_jsonl(path: Path, what: str = "file") -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line, so later checks can name the line too."""
    rows = []
    for line_number, line in numbered_lines(path, what):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{line_number}: not valid JSON ({exc.msg}); fix or remove that line") from None
        except RecursionError:
            raise UserError(f"{path}:{line_number}: JSON nested too deeply; fix or remove that line") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}:{line_number}: expected a JSON object, got {type(row).__name__}")
        rows.append((line_number, row))
    return rows


def read_json(path: Path, object_pairs_hook=None) -> Any:
    """Parse a whole JSON file (UTF-8); undecodable bytes or invalid JSON are a UserError naming the file."""
    with open_for_reading(path) as handle:
        raw = handle.read()
    try:
        return json.loads(raw.decode("utf-8-sig"), object_pairs_hook=object_pairs_hook)
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start}); "
                        "save the file as UTF-8") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); fix the file") from None
    except RecursionError:
        raise UserError(f"{path}: JSON nested too deeply; fix the file") from None


def jsonl_text(rows: list[dict[str, Any]]) -> str:
    """Rows as JSONL text: stable key order and no ASCII escaping, so equal inputs give equal bytes."""
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def atomic_write_text(path: Path, text: str) -> None:
    """Write text to a temporary file beside `path`, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


@contextlib.contextmanager
def atomic_directory(final: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside `final`; on success it replaces `final`, on error it is removed.

    `final` must not exist, or be empty, or `overwrite` must be set.
    """
    if final.exists() and not final.is_dir():
        raise UserError(f"output {final} exists and is not a directory; choose another --output-dir")
    if final.is_dir() and any(final.iterdir()) and not overwrite:
        raise UserError(f"output directory {final} is not empty; pass --overwrite or choose another --output-dir")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
