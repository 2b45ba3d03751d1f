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

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragtrain.data.beir import (
    document_text,
    read_beir_corpus_texts,
    read_beir_queries,
    read_qrels,
    text_field,
    whole_grade,
)
from ragtrain.errors import UserError, quoted
from ragtrain.files.jsonfiles import read_json
from ragtrain.retrieval.metrics import judged_queries


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
    corpus = read_beir_corpus_texts(directory / "corpus.jsonl", dropped)  # a row at a time, each text held once
    queries = read_beir_queries(directory / "queries.jsonl", dropped)
    return corpus, queries, read_qrels(qrels_path, dropped)


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
        return document_text({"title": text_field(doc, "title", where), "text": text_field(doc, "text", where)})
    raise UserError(f"{where} must be a text or an object with 'title' and 'text', got {type(doc).__name__}")


def _json_judgements(relevant: Any, where: str) -> dict[str, int]:
    """[doc_id, ...] (grade 1 each) or {doc_id: grade}; a string is refused, never read as a list of letters."""
    if isinstance(relevant, dict):
        return {doc_id: whole_grade(grade, f"{where}[{doc_id!r}]") for doc_id, grade in relevant.items()}
    if not isinstance(relevant, list):
        raise UserError(f"{where} must be a list of document ids or an object {{id: grade}}, "
                        f"got {type(relevant).__name__}")
    judged: dict[str, int] = {}
    for doc_id in relevant:
        if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)):
            raise UserError(f"{where}: document id {quoted(doc_id)} must be a string or integer")
        judged.setdefault(str(doc_id), 1)
    return judged
