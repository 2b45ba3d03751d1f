"""Evaluation sets: a BEIR-layout directory or one JSON file, checked so that every judged id exists.

BEIR layout: corpus.jsonl (`_id`, `title`, `text`), queries.jsonl (`_id`, `text`), qrels/<split>.tsv with the
header `query-id<TAB>corpus-id<TAB>score`. The eval/ folder written by `ragtrain prepare-data` is one.

JSON file (the schema of sentence-transformers' InformationRetrievalEvaluator; `--split` is ignored):
    {"queries": {qid: text}, "corpus": {doc_id: text or {"title": ..., "text": ...}},
     "relevant_docs": {qid: [doc_id, ...] or {doc_id: grade}}}
A list of relevant ids means grade 1 each. Grades are whole numbers (as trec_eval reads them).

A repeated id (corpus, queries, a judgement, a JSON key) keeps its first occurrence; the rest are dropped and
counted in `EvalData.dropped`, which evaluate reports. Anything else malformed is a UserError naming the file
and the line or id.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragtrain.errors import UserError
from ragtrain.fileio import numbered_lines, read_json, read_numbered_jsonl
from ragtrain.metrics import judged_queries


@dataclass(frozen=True)
class EvalData:
    corpus_ids: list[str]
    corpus_texts: list[str]
    query_ids: list[str]  # only queries with at least one relevant document, sorted
    query_texts: list[str]
    qrels: dict[str, dict[str, int]]  # for those queries only
    excluded_queries: int = 0  # judged queries left out: no relevant document
    dropped: dict[str, int] = field(default_factory=dict)  # repeated ids dropped (the first kept), by kind


def load_eval_data(directory: Path, split: str, split_flag: str = "--split") -> EvalData:
    """Read and check a BEIR directory (or a JSON file); ids in the qrels must exist in corpus and queries.

    `split_flag` is how the command that was run names the split option (evaluate's --split, train's
    --eval-split), so a message tells the user the flag they can actually pass."""
    dropped: Counter = Counter()
    if directory.is_file():
        corpus, queries, qrels = _read_json_eval(directory, dropped)
        source, hint = str(directory), "check the file"
    else:
        corpus, queries, qrels = _read_beir(directory, split, split_flag, dropped)
        source, hint = str(directory / "qrels" / f"{split}.tsv"), f"choose another {split_flag} or check the file"
    if not corpus:
        raise UserError(f"the corpus of {directory} is empty; evaluation needs documents to search")
    if not qrels:
        raise UserError(f"{source} has no judgements; {hint}")
    _check_ids(qrels, queries, corpus, source)
    kept = sorted(judged_queries(qrels))
    if not kept:
        raise UserError(f"{source} has no relevant judgement (every score is 0 or less); nothing to evaluate")
    no_text = [q for q in kept if not queries[q].strip()]
    if no_text:
        raise UserError(f"{len(no_text)} judged queries of {directory} have no text (e.g. {no_text[0]!r}); "
                        "give each a text or remove its judgements")
    return EvalData(
        corpus_ids=list(corpus),
        corpus_texts=list(corpus.values()),
        query_ids=kept,
        query_texts=[queries[q] for q in kept],
        qrels={q: qrels[q] for q in kept},
        excluded_queries=len(qrels) - len(kept),
        dropped=dict(sorted((kind, n) for kind, n in dropped.items() if n)),
    )


def dropped_message(data: EvalData, source: Path) -> str | None:
    """What was dropped as repeated ids, as a warning line; None when nothing was."""
    if not data.dropped:
        return None
    return (f"{source}: repeated ids kept their first occurrence; dropped "
            + ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in data.dropped.items()))


def _check_ids(qrels: dict[str, dict[str, int]], queries: dict[str, str], corpus: dict[str, str], source: str) -> None:
    missing_queries = sorted(q for q in qrels if q not in queries)
    if missing_queries:
        raise UserError(f"{len(missing_queries)} query ids in {source} are not among the queries "
                        f"(e.g. {missing_queries[0]!r}); fix the qrels or the queries")
    missing_docs = sorted({d for judged in qrels.values() for d in judged if d not in corpus})
    if missing_docs:
        raise UserError(f"{len(missing_docs)} document ids in {source} are not in the corpus "
                        f"(e.g. {missing_docs[0]!r}); fix the qrels or the corpus")


def _read_beir(directory: Path, split: str, split_flag: str,
               dropped: Counter) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]]]:
    if not directory.is_dir():
        raise UserError(f"evaluation data {directory} not found; pass the eval/ folder from 'ragtrain prepare-data', "
                        "a BEIR directory or a JSON file")
    qrels_path = directory / "qrels" / f"{split}.tsv"
    for path in (directory / "corpus.jsonl", directory / "queries.jsonl"):
        if not path.is_file():
            raise UserError(f"{path} not found; --eval-data must be a BEIR directory (corpus.jsonl, queries.jsonl, "
                            f"qrels/<split>.tsv) such as the eval/ folder from 'ragtrain prepare-data'")
    if not qrels_path.is_file():
        splits = sorted(p.stem for p in (directory / "qrels").glob("*.tsv"))
        hint = f"available: {', '.join(splits)}" if splits else f"{directory / 'qrels'} has no .tsv file"
        raise UserError(f"{qrels_path} not found; choose {split_flag} from the files in qrels/ ({hint})")
    corpus = {doc_id: document_text(doc) for doc_id, doc in read_beir_corpus(directory / "corpus.jsonl", dropped).items()}
    queries = read_beir_queries(directory / "queries.jsonl", dropped)
    return corpus, queries, read_qrels(qrels_path, dropped)


def document_text(doc: dict[str, str]) -> str:
    """BEIR joins title and text with a space; so do we, so results compare with published ones."""
    return f"{doc['title']} {doc['text']}".strip()


def _row_id(row: dict, where: str) -> str:
    """A row's `_id` as text; missing, empty or not a string or number is a UserError."""
    if "_id" not in row:
        raise UserError(f"{where}: no '_id'; every row of a BEIR file needs one")
    value = row["_id"]
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise UserError(f"{where}: '_id' must be a non-empty string or integer, got {json.dumps(value)[:40]}")
    return str(value)


def _text_field(row: dict, name: str, where: str) -> str:
    """A text field: a string, or missing or null for none; any other type is a UserError."""
    value = row.get(name)
    if value is not None and not isinstance(value, str):
        raise UserError(f"{where}: '{name}' must be a string, got {type(value).__name__}")
    return value or ""


def read_beir_corpus(path: Path, dropped: Counter) -> dict[str, dict[str, str]]:
    """id -> {"title", "text"} in file order; a repeated id keeps its first row (counted)."""
    corpus: dict[str, dict[str, str]] = {}
    for number, row in read_numbered_jsonl(path, "corpus"):
        where = f"{path}:{number}"
        doc_id = _row_id(row, where)
        doc = {"title": _text_field(row, "title", where), "text": _text_field(row, "text", where)}
        if doc_id in corpus:
            dropped["corpus_duplicate_ids"] += 1
        else:
            corpus[doc_id] = doc
    return corpus


def read_beir_queries(path: Path, dropped: Counter) -> dict[str, str]:
    """id -> text ("" when it has none) in file order; a repeated id keeps its first row (counted)."""
    queries: dict[str, str] = {}
    for number, row in read_numbered_jsonl(path, "queries"):
        where = f"{path}:{number}"
        query_id = _row_id(row, where)
        text = _text_field(row, "text", where)
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
        grade = _grade(float(score) if _is_number(score) else score, f"{path}:{line_number}", repr(score))
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


def _grade(value: Any, where: str, shown: str | None = None) -> int:
    """A relevance grade: a whole, finite JSON number (a TSV score arrives as a float, `shown` as written). A
    string, null, inf or 1.5 would become a wrong metric without a word, so each is a UserError."""
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if number is None or not math.isfinite(number) or number != int(number):
        raise UserError(f"{where}: grade {shown or json.dumps(value)[:40]} is not a whole number; grades are "
                        "integers such as 0, 1, 2")
    return int(number)


def _read_json_eval(path: Path, dropped: Counter) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]]]:
    data = _load_json(path, dropped)
    if not isinstance(data, dict) or not all(isinstance(data.get(key), dict) for key in ("queries", "corpus", "relevant_docs")):
        raise UserError(f"{path}: expected a JSON object with 'queries', 'corpus' and 'relevant_docs' objects "
                        "(see 'ragtrain evaluate --help')")
    corpus = {doc_id: _json_document(doc, f"{path}: corpus[{doc_id!r}]") for doc_id, doc in data["corpus"].items()}
    queries = {}
    for query_id, text in data["queries"].items():
        if text is not None and not isinstance(text, str):
            raise UserError(f"{path}: queries[{query_id!r}] must be a text, got {type(text).__name__}")
        queries[query_id] = text or ""
    qrels = {query_id: _json_judgements(relevant, f"{path}: relevant_docs[{query_id!r}]")
             for query_id, relevant in data["relevant_docs"].items()}
    return corpus, queries, qrels


def _load_json(path: Path, dropped: Counter) -> Any:
    """Parse a JSON file; a repeated key in an object keeps its first value (counted)."""

    def first_wins(pairs: list[tuple[str, Any]]) -> dict:
        kept: dict[str, Any] = {}
        for key, value in pairs:
            if key in kept:
                dropped["json_duplicate_keys"] += 1
            else:
                kept[key] = value
        return kept

    return read_json(path, object_pairs_hook=first_wins)


def _json_document(doc: Any, where: str) -> str:
    if isinstance(doc, str):
        return doc
    if isinstance(doc, dict):
        return document_text({"title": _text_field(doc, "title", where), "text": _text_field(doc, "text", where)})
    raise UserError(f"{where} must be a text or an object with 'title' and 'text', got {type(doc).__name__}")


def _json_judgements(relevant: Any, where: str) -> dict[str, int]:
    """[doc_id, ...] (grade 1 each) or {doc_id: grade}; a string is refused, never read as a list of letters."""
    if isinstance(relevant, dict):
        return {doc_id: _grade(grade, f"{where}[{doc_id!r}]") for doc_id, grade in relevant.items()}
    if not isinstance(relevant, list):
        raise UserError(f"{where} must be a list of document ids or an object {{id: grade}}, "
                        f"got {type(relevant).__name__}")
    judged: dict[str, int] = {}
    for doc_id in relevant:
        if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)):
            raise UserError(f"{where}: document id {json.dumps(doc_id)[:40]} must be a string or integer")
        judged.setdefault(str(doc_id), 1)
    return judged
