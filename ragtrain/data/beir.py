"""The BEIR layout of an evaluation set, read and written: corpus.jsonl, queries.jsonl and qrels/<split>.tsv.

corpus.jsonl rows hold `_id`, `title` and `text`; queries.jsonl rows `_id` and `text`; a qrels file starts with
the header `query-id<TAB>corpus-id<TAB>score`, then one judgement per line, its grade a whole number. A repeated id
(corpus, queries) or judgement keeps its first occurrence; the others are counted. Anything else malformed is a
UserError naming the file and line. `prepare-data --beir` and `evaluate` read a folder with the same `read_beir`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ragtrain.errors import UserError, quoted
from ragtrain.files.atomic import atomic_write_text
from ragtrain.files.jsonfiles import iter_numbered_jsonl, numbered_lines, read_numbered_jsonl, write_jsonl

QRELS_HEADER = "query-id\tcorpus-id\tscore"


def read_beir(directory: Path, splits: list[str], counts: Counter) -> tuple[dict[str, dict[str, str]], dict[str, str],
                                                                          dict[str, dict[str, dict[str, int]]]]:
    """corpus (id -> {"title", "text"}), queries (id -> text) and, for each split, the judgements of
    qrels/<split>.tsv (query id -> {document id: grade}), all in file order. Repeats are counted in `counts`.
    The caller has checked that the files exist, and says what it needs of them."""
    corpus = read_beir_corpus(directory / "corpus.jsonl", counts)
    queries = read_beir_queries(directory / "queries.jsonl", counts)
    return corpus, queries, {split: read_qrels(directory / "qrels" / f"{split}.tsv", counts) for split in splits}


def write_beir(directory: Path, corpus: Iterable[dict], queries: list[dict],
               qrels: dict[str, list[tuple[str, str, int]]]) -> int:
    """corpus rows ({"_id", "title", "text"}, written as they come), query rows ({"_id", "text"}) and each split's
    (query id, corpus id, grade) judgements, each file written atomically; the number of corpus rows. A split
    without judgements gets no file: evaluate refuses one."""
    documents = write_jsonl(directory / "corpus.jsonl", corpus)
    write_jsonl(directory / "queries.jsonl", queries)
    for split, rows in qrels.items():
        if not rows:
            continue
        lines = [QRELS_HEADER, *(f"{q}\t{d}\t{s}" for q, d, s in rows)]
        atomic_write_text(directory / "qrels" / f"{split}.tsv", "\n".join(lines) + "\n")
    return documents


def document_text(doc: dict[str, str]) -> str:
    """BEIR joins title and text with a space; so do we, so results compare with published ones."""
    return f"{doc['title']} {doc['text']}".strip()


def _row_id(row: dict, where: str) -> str:
    """A row's `_id` as text; missing, empty or not a string or number is a UserError."""
    if "_id" not in row:
        raise UserError(f"{where}: no '_id'; every row of a BEIR file needs one")
    value = row["_id"]
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise UserError(f"{where}: '_id' must be a non-empty string or integer, got {quoted(value)}")
    return str(value)


def text_field(row: dict, name: str, where: str) -> str:
    """A text field: a string, or missing or null for none; any other type is a UserError."""
    value = row.get(name)
    if value is not None and not isinstance(value, str):
        raise UserError(f"{where}: '{name}' must be a string, got {type(value).__name__}")
    return value or ""


def read_beir_corpus(path: Path, dropped: Counter) -> dict[str, dict[str, str]]:
    """id -> {"title", "text"} in file order; a repeated id keeps its first row (counted)."""
    return dict(_corpus_rows(path, dropped))


def read_beir_corpus_texts(path: Path, dropped: Counter) -> dict[str, str]:
    """id -> title and text as one text (document_text), in file order, read a row at a time so that a large corpus
    is held once; a repeated id keeps its first row (counted)."""
    return {doc_id: document_text(doc) for doc_id, doc in _corpus_rows(path, dropped)}


def _corpus_rows(path: Path, dropped: Counter) -> Iterator[tuple[str, dict[str, str]]]:
    seen: set[str] = set()
    for number, row in iter_numbered_jsonl(path, "corpus"):
        where = f"{path}:{number}"
        doc_id = _row_id(row, where)
        doc = {"title": text_field(row, "title", where), "text": text_field(row, "text", where)}
        if doc_id in seen:
            dropped["corpus_duplicate_ids"] += 1
        else:
            seen.add(doc_id)
            yield doc_id, doc


def read_beir_queries(path: Path, dropped: Counter) -> dict[str, str]:
    """id -> text ("" when it has none) in file order; a repeated id keeps its first row (counted)."""
    queries: dict[str, str] = {}
    for number, row in read_numbered_jsonl(path, "queries"):
        where = f"{path}:{number}"
        query_id = _row_id(row, where)
        text = text_field(row, "text", where)
        if query_id in queries:
            dropped["queries_duplicate_ids"] += 1
        else:
            queries[query_id] = text
    return queries


def read_qrels(path: Path, dropped: Counter | None = None) -> dict[str, dict[str, int]]:
    """query id -> {document id: grade}. A first line whose score is not a number is a header; a repeated
    (query, document) keeps its first grade (counted in `dropped`)."""
    qrels: dict[str, dict[str, int]] = {}
    for line_number, line in numbered_lines(path, "qrels file"):
        row = line.rstrip("\r\n").split("\t")
        if not line.strip() or (line_number == 1 and _is_header(row)):
            continue
        fields = row if len(row) > 1 else line.split()
        trec = len(fields) == 4 and fields[1] in ("0", "Q0")  # TREC qrels: query-id 0 doc-id grade
        if len(row) < 3 or trec or not row[0].strip() or not row[1].strip():
            raise UserError(f"{path}:{line_number}: expected 'query-id<TAB>corpus-id<TAB>score'"
                            + ("; this looks like TREC qrels (query 0 document grade): drop the second column"
                               if trec else ""))
        score = row[2].strip()
        grade = whole_grade(float(score) if _is_number(score) else score, f"{path}:{line_number}", repr(score))
        judged = qrels.setdefault(row[0], {})  # ids exactly as written, as the corpus and queries hold them
        if row[1] in judged:
            if dropped is not None:
                dropped["qrels_duplicate_judgements"] += 1
        else:
            judged[row[1]] = grade
    return qrels


def _is_header(row: list[str]) -> bool:
    """BEIR's `query-id corpus-id score`, or another header: a word where the score belongs."""
    score = row[2].strip() if len(row) >= 3 else ""
    return row[0] == "query-id" or (score.replace("-", "").replace("_", "").isalpha() and not _is_number(score))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def whole_grade(value: Any, where: str, shown: str | None = None) -> int:
    """A relevance grade: a whole, finite JSON number (a TSV score arrives as a float, `shown` as written). A
    string, null, inf or 1.5 would become a wrong metric without a word, so each is a UserError."""
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if number is None or not math.isfinite(number) or number != int(number):
        raise UserError(f"{where}: grade {shown or quoted(value)} is not a whole number; grades are "
                        "integers such as 0, 1, 2")
    return int(number)
