"""Labelled pairs where users keep them: JSONL, a JSON list, CSV/TSV, Parquet, or a Hugging Face dataset saved with
`save_to_disk` (a folder); each row a query, its positive(s) and any negatives.

Columns are recognised by the names sentence-transformers and FlagEmbedding datasets use: the query is `query`,
`anchor` or `question`; the positive `positive`, `positives`, `pos` or `answer`; negatives `negative`, `negatives`,
`neg`, or `negative_1`, `negative_2`, ... (mined hard negatives), each a text or a list of texts. Two candidates for
one role (`query` and `anchor`) are one UserError asking which; --query-field, --positive-field and --negative-field
name columns outright. One line says which columns were used; prepare-data prints it with its counts.
"""

from __future__ import annotations

import csv
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragtrain.errors import UserError, quoted
from ragtrain.files.jsonfiles import read_json, read_jsonl, read_utf8

QUERY_NAMES = ("query", "anchor", "question")
POSITIVE_NAMES = ("positive", "positives", "pos", "answer")
NEGATIVE_NAMES = ("negative", "negatives", "neg")
NUMBERED_NEGATIVE = re.compile(r"^negative_(\d+)$")
ROW_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")  # a folder: a saved Hugging Face dataset
COLUMNS_SHOWN = 12  # of a file's columns, when one is missing

Pair = tuple[str, list[str], list[str]]  # query, positives, given negatives


@dataclass(frozen=True)
class PairFields:
    """The columns --query-field, --positive-field and --negative-field name (None: recognised by name)."""

    query: str | None = None
    positive: str | None = None
    negative: str | None = None

    @classmethod
    def of(cls, options) -> "PairFields":
        return cls(options.query_field, options.positive_field, options.negative_field)


# ------------------------------------------------------------------------------------------------ rows by format
def read_rows(path: Path) -> tuple[list[dict[str, Any]], list[str], str]:
    """The rows of a pairs file or saved dataset, its column names in order, and which part was read ("" for all)."""
    if path.is_dir():
        return _dataset_rows(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows = read_jsonl(path, "--pairs file")
    elif suffix == ".json":
        rows = read_json(path)
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise UserError(f"--pairs {path}: a .json file must hold a list of objects (or write JSONL, one a line)")
    elif suffix in (".csv", ".tsv"):
        rows = _csv_rows(path, "\t" if suffix == ".tsv" else ",")
    elif suffix == ".parquet":
        import pyarrow.parquet  # pre-flight checked that it is installed

        rows = pyarrow.parquet.read_table(path).to_pylist()
    else:
        raise UserError(f"--pairs {path}: unknown format; use {', '.join(ROW_SUFFIXES)} or a saved Hugging Face "
                        "dataset folder")
    return rows, list(dict.fromkeys(key for row in rows for key in row)), ""


def _csv_rows(path: Path, delimiter: str) -> list[dict[str, Any]]:
    text = read_utf8(path, f"--pairs {path} is not UTF-8 text; save it as UTF-8")
    csv.field_size_limit(sys.maxsize)
    return list(csv.DictReader(text.splitlines(), delimiter=delimiter))


def _dataset_rows(path: Path) -> tuple[list[dict[str, Any]], list[str], str]:
    """A `save_to_disk` folder: a Dataset, or a DatasetDict whose train split is used (the one split if alone)."""
    import datasets  # pre-flight checked that it is installed

    try:
        loaded = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(f"--pairs {path} is not a dataset saved with save_to_disk ({' '.join(str(exc).split())}); "
                        "pass that folder, or a JSONL, CSV or Parquet file") from None
    part = ""
    if isinstance(loaded, datasets.DatasetDict):
        splits = list(loaded)
        if "train" not in loaded and len(splits) != 1:
            raise UserError(f"--pairs {path} holds the splits {', '.join(splits)} and no 'train'; save the split to "
                            "use on its own (dataset['name'].save_to_disk(...))")
        split = "train" if "train" in loaded else splits[0]
        part = f"its {split!r} split (of {', '.join(splits)}; prepare-data makes its own held-out splits)"
        loaded = loaded[split]
    return loaded.to_list(), list(loaded.column_names), part


# ------------------------------------------------------------------------------------------------ columns
SAME_ROLE = ({"positive", "positives"}, {"negative", "negatives"})  # a row may use either: one column, two spellings


def _role_columns(role: str, names: tuple[str, ...], columns: list[str], given: str | None, flag: str,
                  path: Path) -> list[str]:
    """The columns of one role: the one named by `flag`, else the one of `names` present (or both spellings of
    one word, as a JSONL file may use 'positive' on one line and 'positives' on another)."""
    if given is not None:
        if given not in columns:
            raise UserError(f"{flag} {given!r} is not a column of --pairs {path} (it has {_listed(columns)}); "
                            f"pass {flag} with one of those")
        return [given]
    found = [name for name in names if name in columns]
    if len(found) > 1 and set(found) not in SAME_ROLE:
        raise UserError(f"--pairs {path} has both {found[0]!r} and {found[1]!r}, either of which could be the "
                        f"{role}; say which with {flag}")
    return found


def pair_columns(columns: list[str], fields: PairFields, path: Path) -> tuple[list[str], list[str], list[str]]:
    """The query's column, the positives' and the negatives' (negative_1, negative_2, ... in order, after any
    'negative' or 'negatives')."""
    query = _role_columns("query", QUERY_NAMES, columns, fields.query, "--query-field", path)
    positive = _role_columns("positive", POSITIVE_NAMES, columns, fields.positive, "--positive-field", path)
    for role, found, names, flag in (("query", query, QUERY_NAMES, "--query-field"),
                                     ("positive", positive, POSITIVE_NAMES, "--positive-field")):
        if not found:
            raise UserError(f"--pairs {path} has no {role} column ({', '.join(names)}; it has {_listed(columns)}); "
                            f"name it with {flag}")
    negatives = _role_columns("negatives", NEGATIVE_NAMES, columns, fields.negative, "--negative-field", path)
    if fields.negative is None:
        negatives += sorted((c for c in columns if NUMBERED_NEGATIVE.match(c)), key=lambda c: int(c.rsplit("_", 1)[1]))
    return query, positive, negatives


def _listed(columns: list[str]) -> str:
    shown = ", ".join(repr(c) for c in columns[:COLUMNS_SHOWN])
    return shown + (f" and {len(columns) - COLUMNS_SHOWN} more" if len(columns) > COLUMNS_SHOWN else "") if columns \
        else "no columns"


def _columns_line(path: Path, part: str, rows: int, query: list[str], positive: list[str], negatives: list[str]) -> str:
    def named(columns: list[str]) -> str:
        if len(columns) > 2:
            return f"{columns[0]!r} to {columns[-1]!r} ({len(columns)} columns)"
        return " and ".join(map(repr, columns)) or "none"

    return (f"--pairs {path}{', ' + part if part else ''}: {rows:,} rows; query from {named(query)}, positive from "
            f"{named(positive)}, negatives from {named(negatives)} (--query-field, --positive-field and "
            "--negative-field choose others)")


# ------------------------------------------------------------------------------------------------ pairs
def _texts(value: Any, role: str, column: str, number: int, path: Path, required: bool) -> list[str]:
    """A cell as its texts: a text, a list of texts, or (not required) nothing; blank texts left out."""
    if value is None or (isinstance(value, str) and not value.strip()):
        texts = []
    elif isinstance(value, str):
        texts = [value]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        texts = [v for v in value if v.strip()]
    else:
        raise UserError(f"--pairs {path}: row {number}: {column!r} must be a text or a list of texts, got "
                        f"{quoted(value)}")
    if required and not texts:
        raise UserError(f"--pairs {path}: row {number} has no {role} text in {column!r}; every row needs a query "
                        "and a positive")
    return texts


def read_pairs(path: Path, fields: PairFields = PairFields()) -> tuple[list[Pair], str]:
    """(query, positives, given negatives) for each row, and a line naming the columns used (said with the counts,
    at the end: a run that stops on a mistake prints its one line alone)."""
    rows, columns, part = read_rows(path)
    if not rows:
        raise UserError(f"--pairs {path} holds no pairs; each row needs a query and a positive")
    (query,), positive, negatives = pair_columns(columns, fields, path)
    pairs = []
    for number, row in enumerate(rows, start=1):
        queries = _texts(row.get(query), "query", query, number, path, required=True)
        if len(queries) != 1:
            raise UserError(f"--pairs {path}: row {number}: {query!r} must be one text, got {len(queries)}")
        positives = [text for column in positive for text in _texts(row.get(column), "", column, number, path, False)]
        if not positives:
            raise UserError(f"--pairs {path}: row {number} has no positive text in {' or '.join(map(repr, positive))}; "
                            "every row needs a query and a positive")
        given = [text for column in negatives for text in _texts(row.get(column), "", column, number, path, False)]
        pairs.append((queries[0], positives, given))
    return pairs, _columns_line(path, part, len(rows), [query], positive, negatives)
