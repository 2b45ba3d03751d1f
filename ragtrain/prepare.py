"""Raw documents -> (query, positive, negatives) triples, document-level splits and a BEIR evaluation set."""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ragtrain import __version__
from ragtrain.config import PrepareConfig, as_dict
from ragtrain.documents import Document, Passage, find_files, read_documents, split_passages
from ragtrain.errors import UserError
from ragtrain.fileio import atomic_directory, atomic_write_json, atomic_write_text, jsonl_text
from ragtrain.negatives import build_bm25, mine_bm25_negatives

NEGATIVE_RANK_WINDOW = (3, 30)  # skip the very top: BM25's first hits are often unlabelled positives
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Query:
    text: str
    positive: int  # index into the passage list
    strategy: str


@dataclass
class PrepareSummary:
    output_dir: Path
    counts: Counter = field(default_factory=Counter)


def prepare(config: PrepareConfig) -> PrepareSummary:
    config.validate()
    files = find_files(config.inputs)
    documents = read_documents(files)
    if not documents:
        raise UserError(f"no usable documents found in {', '.join(map(str, config.inputs))}; "
                        "pass .txt, .md, .rst or .jsonl files with text")
    passages = [p for doc in tqdm(documents, desc="splitting", unit="doc") for p in split_passages(doc, config.max_words, config.overlap)]
    split_of = split_documents(documents, config.val_fraction, config.test_fraction, config.seed)
    rng = random.Random(config.seed)
    queries = [q for i, p in enumerate(passages) if (q := make_query(p, i, config.query_strategy, rng))]
    retriever = build_bm25([p.text for p in passages])
    negatives = mine_bm25_negatives(
        [q.text for q in queries], [q.positive for q in queries], passages,
        config.negatives, NEGATIVE_RANK_WINDOW, config.seed, retriever,
    )
    summary = PrepareSummary(config.output_dir)
    summary.counts.update(documents=len(documents), files=len(files), passages=len(passages))
    rows: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    split_queries: dict[str, list[Query]] = {"val": [], "test": []}
    for query, negative_ids in zip(queries, negatives):
        split = split_of[passages[query.positive].doc_id]
        summary.counts[f"queries_{query.strategy}"] += 1
        rows[split].append({"query": query.text, "positive": passages[query.positive].text,
                            "negatives": [passages[i].text for i in negative_ids]})
        if split != "train":
            split_queries[split].append(query)
    if not rows["train"]:
        raise UserError("no training triples: the documents are too few or too short for the splits asked; "
                        "add documents or lower --val-fraction/--test-fraction")
    with atomic_directory(config.output_dir, config.overwrite) as tmp:
        write_triples(tmp, rows)
        write_beir(tmp / "eval", passages, split_queries)
        summary.counts.update({f"{name}_triples": len(r) for name, r in rows.items()})
        write_manifest(tmp, config, summary.counts)
    return summary


def split_documents(documents: list[Document], val_fraction: float, test_fraction: float, seed: int) -> dict[str, str]:
    """Assign whole documents to train / val / test, so no document is on both sides."""
    doc_ids = sorted({doc.doc_id for doc in documents})
    random.Random(seed).shuffle(doc_ids)
    n_val = round(len(doc_ids) * val_fraction)
    n_test = round(len(doc_ids) * test_fraction)
    if (val_fraction and not n_val) or (test_fraction and not n_test) or n_val + n_test >= len(doc_ids):
        raise UserError(f"{len(doc_ids)} documents are too few for --val-fraction {val_fraction} and "
                        f"--test-fraction {test_fraction}; add documents or lower the fractions")
    split = {doc_id: "val" for doc_id in doc_ids[:n_val]}
    split.update({doc_id: "test" for doc_id in doc_ids[n_val : n_val + n_test]})
    split.update({doc_id: "train" for doc_id in doc_ids[n_val + n_test :]})
    return split


def make_query(passage: Passage, index: int, strategy: str, rng: random.Random) -> Query | None:
    """A label-free query for a passage: a heading, or one of its sentences (inverse cloze)."""
    if strategy == "mix":
        strategy = "heading" if passage.section and rng.random() < 0.3 else "cloze"
    if strategy == "heading":
        heading = passage.section or passage.title
        if len(heading.split()) >= 2:
            return Query(heading, index, "heading")
        strategy = "cloze"
    sentences = [s for s in _SENTENCE_END.split(passage.text) if 4 <= len(s.split()) <= 40]
    if len(sentences) < 2:
        return None
    return Query(rng.choice(sentences).strip(), index, strategy)


def write_triples(directory: Path, rows: dict[str, list[dict]]) -> None:
    atomic_write_text(directory / "train.jsonl", jsonl_text(rows["train"]))
    atomic_write_text(directory / "val.jsonl", jsonl_text(rows["val"]))


def write_beir(directory: Path, passages: list[Passage], split_queries: dict[str, list[Query]]) -> None:
    """BEIR layout; the corpus holds every passage so evaluation searches the whole collection."""
    corpus = [{"_id": p.passage_id, "title": p.title, "text": p.text} for p in passages]
    atomic_write_text(directory / "corpus.jsonl", jsonl_text(corpus))
    queries = []
    for split, split_rows in split_queries.items():
        lines = ["query-id\tcorpus-id\tscore"]
        for n, query in enumerate(split_rows):
            query_id = f"{split}-{n}"
            queries.append({"_id": query_id, "text": query.text})
            lines.append(f"{query_id}\t{passages[query.positive].passage_id}\t1")
        atomic_write_text(directory / "qrels" / f"{split}.tsv", "\n".join(lines) + "\n")
    atomic_write_text(directory / "queries.jsonl", jsonl_text(queries))


def write_manifest(directory: Path, config: PrepareConfig, counts: Counter) -> None:
    outputs = sorted(p for p in directory.rglob("*") if p.is_file())
    atomic_write_json(directory / "manifest.json", {
        "ragtrain_version": __version__,
        "options": as_dict(config) | {"output_dir": None, "inputs": [str(p) for p in config.inputs]},
        "counts": dict(sorted(counts.items())),
        "sha256": {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest() for p in outputs},
    })
