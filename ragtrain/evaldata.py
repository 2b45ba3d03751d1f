"""Evaluation sets: a BEIR-layout directory or one JSON file, checked so that every judged id exists.

BEIR layout: corpus.jsonl (`_id`, `title`, `text`), queries.jsonl (`_id`, `text`), qrels/<split>.tsv with the
header `query-id<TAB>corpus-id<TAB>score`. The eval/ folder written by `ragtrain prepare-data` is one.

JSON file (the schema of sentence-transformers' InformationRetrievalEvaluator; `--split` is ignored):
    {"queries": {qid: text}, "corpus": {doc_id: text or {"title": ..., "text": ...}},
     "relevant_docs": {qid: [doc_id, ...] or {doc_id: grade}}}
A list of relevant ids means grade 1 each.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from ragtrain.errors import UserError
from ragtrain.fileio import read_jsonl
from ragtrain.metrics import judged_queries


@dataclass(frozen=True)
class EvalData:
    corpus_ids: list[str]
    corpus_texts: list[str]
    query_ids: list[str]  # only queries with at least one relevant document, sorted
    query_texts: list[str]
    qrels: dict[str, dict[str, int]]  # for those queries only
    excluded_queries: int = 0  # judged queries left out: no relevant document


def load_eval_data(directory: Path, split: str) -> EvalData:
    """Read and check a BEIR directory (or a JSON file); ids in the qrels must exist in corpus and queries."""
    if directory.is_file():
        corpus, queries, qrels = _read_json_eval(directory)
        source = str(directory)
    else:
        corpus, queries, qrels = _read_beir(directory, split)
        source = str(directory / "qrels" / f"{split}.tsv")
    if not corpus:
        raise UserError(f"the corpus of {directory} is empty; evaluation needs documents to search")
    if not qrels:
        raise UserError(f"{source} has no judgements; choose another --split or check the file")
    _check_ids(qrels, queries, corpus, source)
    kept = sorted(judged_queries(qrels))
    if not kept:
        raise UserError(f"{source} has no relevant judgement (every score is 0); nothing to evaluate")
    return EvalData(
        corpus_ids=list(corpus),
        corpus_texts=list(corpus.values()),
        query_ids=kept,
        query_texts=[queries[q] for q in kept],
        qrels={q: qrels[q] for q in kept},
        excluded_queries=len(qrels) - len(kept),
    )


def _check_ids(qrels: dict[str, dict[str, int]], queries: dict[str, str], corpus: dict[str, str], source: str) -> None:
    missing_queries = sorted(q for q in qrels if q not in queries)
    if missing_queries:
        raise UserError(f"{len(missing_queries)} query ids in {source} are not among the queries "
                        f"(e.g. {missing_queries[0]!r}); fix the qrels or the queries")
    missing_docs = sorted({d for judged in qrels.values() for d in judged if d not in corpus})
    if missing_docs:
        raise UserError(f"{len(missing_docs)} document ids in {source} are not in the corpus "
                        f"(e.g. {missing_docs[0]!r}); fix the qrels or the corpus")


def _read_beir(directory: Path, split: str) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]]]:
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
        raise UserError(f"{qrels_path} not found; choose --split from the files in qrels/ ({hint})")
    corpus = {str(doc["_id"]): _document_text(doc) for doc in read_jsonl(directory / "corpus.jsonl", "corpus")}
    queries = {str(q["_id"]): str(q.get("text", "")) for q in read_jsonl(directory / "queries.jsonl", "queries")}
    return corpus, queries, read_qrels(qrels_path)


def _document_text(doc: dict) -> str:
    """BEIR joins title and text with a space; so do we, so results compare with published ones."""
    return f"{doc.get('title') or ''} {doc.get('text') or ''}".strip()


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as handle:
        for line_number, row in enumerate(csv.reader(handle, delimiter="\t"), start=1):
            if not row or (line_number == 1 and row[0] == "query-id"):
                continue
            if len(row) < 3:
                raise UserError(f"{path}:{line_number}: expected 'query-id<TAB>corpus-id<TAB>score'")
            try:
                qrels.setdefault(row[0], {})[row[1]] = int(float(row[2]))
            except ValueError:
                raise UserError(f"{path}:{line_number}: score {row[2]!r} is not a number") from None
    return qrels


def _read_json_eval(path: Path) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); fix the file") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(key), dict) for key in ("queries", "corpus", "relevant_docs")):
        raise UserError(f"{path}: expected a JSON object with 'queries', 'corpus' and 'relevant_docs' objects "
                        "(see 'ragtrain evaluate --help')")
    corpus = {str(d): _document_text(t) if isinstance(t, dict) else str(t) for d, t in data["corpus"].items()}
    queries = {str(q): str(t) for q, t in data["queries"].items()}
    qrels = {}
    for query_id, relevant in data["relevant_docs"].items():
        if isinstance(relevant, dict):
            qrels[str(query_id)] = {str(d): int(g) for d, g in relevant.items()}
        else:
            qrels[str(query_id)] = {str(d): 1 for d in relevant}
    return corpus, queries, qrels
