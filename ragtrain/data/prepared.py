"""What prepare-data makes from any source (documents, labelled pairs, a BEIR folder): training and validation
triples, and an evaluation set in BEIR form whose corpus holds every passage; and how it is written: triples and
corpus rows are made as they are written, so a million of them are never in memory at once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ragtrain.config.common import as_dict
from ragtrain.config.datakinds import data_kind_of
from ragtrain.config.prepare import PrepareConfig
from ragtrain.data.beir import write_beir
from ragtrain.files.atomic import atomic_write_json, file_sha256
from ragtrain.files.jsonfiles import write_jsonl
from ragtrain.files.names import MANIFEST
from ragtrain.version import VERSION

HELD_OUT = ("val", "test")  # the splits whose queries are evaluation queries


@dataclass
class Prepared:
    """Everything that is written: triples, and the evaluation set in BEIR form. Triples and corpus rows may be
    generators, each row made as it is written (and then read only once)."""

    train: Iterable[dict]  # {"query", "positive", "negatives"}
    val: Iterable[dict]
    corpus: Iterable[dict]  # {"_id", "title", "text"}
    queries: list[dict]  # {"_id", "text"}
    qrels: dict[str, list[tuple[str, str, int]]]  # split -> (query id, corpus id, score)
    passages: list[str] = field(default_factory=list)  # document mode: every passage text (a teacher's corpus)
    notes: list[str] = field(default_factory=list)  # what the user is told with the counts (the columns of --pairs)


def held_out_queries(by_split: dict[str, Iterable[tuple[str, Iterable[str]]]]
                     ) -> tuple[list[dict], dict[str, list[tuple[str, str, int]]]]:
    """Query rows and qrels of the val and test splits from each split's (query text, relevant corpus ids):
    query n of a split is `<split>-<n>`, and each relevant corpus id is judged 1."""
    queries, qrels = [], {}
    for split in HELD_OUT:
        qrels[split] = []
        for n, (text, relevant) in enumerate(by_split[split]):
            query_id = f"{split}-{n}"
            queries.append({"_id": query_id, "text": text})
            qrels[split].extend((query_id, corpus_id, 1) for corpus_id in relevant)
    return queries, qrels


def write_prepared(directory: Path, prepared: Prepared) -> Counter:
    """train.jsonl, val.jsonl and eval/ (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) under `directory`, each row
    as it is made; the counts of what was written."""
    return Counter(train_triples=write_jsonl(directory / "train.jsonl", prepared.train),
                   val_triples=write_jsonl(directory / "val.jsonl", prepared.val),
                   eval_corpus=write_beir(directory / "eval", prepared.corpus, prepared.queries, prepared.qrels))


def write_manifest(directory: Path, config: PrepareConfig, counts: Counter) -> None:
    """Inputs as given, options, counts and each output's sha256; nothing that varies between runs."""
    outputs = sorted(p for p in directory.rglob("*") if p.is_file())
    atomic_write_json(directory / MANIFEST, {
        "ragtrain_version": VERSION,
        "inputs": [str(p) for p in config.inputs],
        "data_kind": data_kind_of(as_dict(config)),  # which defaults train takes (datadefaults.py)
        "options": {k: v for k, v in as_dict(config).items() if k not in ("inputs", "output_dir", "overwrite")},
        "counts": dict(sorted(counts.items())),
        "sha256": {p.relative_to(directory).as_posix(): file_sha256(p) for p in outputs},  # read a block at a time
    })
