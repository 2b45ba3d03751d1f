"""What prepare-data makes from any source (documents, labelled pairs, a BEIR folder): training and validation
triples, and an evaluation set in BEIR form whose corpus holds every passage; and how it is written."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ragtrain.config.common import as_dict
from ragtrain.config.datakinds import data_kind_of
from ragtrain.config.prepare import PrepareConfig
from ragtrain.data.beir import write_beir
from ragtrain.files.atomic import atomic_write_json, atomic_write_text
from ragtrain.files.jsonfiles import jsonl_text
from ragtrain.files.names import MANIFEST
from ragtrain.version import VERSION

HELD_OUT = ("val", "test")  # the splits whose queries are evaluation queries


@dataclass
class Prepared:
    """Everything that is written: triples, and the evaluation set in BEIR form."""

    train: list[dict]  # {"query", "positive", "negatives"}
    val: list[dict]
    corpus: list[dict]  # {"_id", "title", "text"}
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


def write_prepared(directory: Path, prepared: Prepared) -> None:
    """train.jsonl, val.jsonl and eval/ (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) under `directory`."""
    atomic_write_text(directory / "train.jsonl", jsonl_text(prepared.train))
    atomic_write_text(directory / "val.jsonl", jsonl_text(prepared.val))
    write_beir(directory / "eval", prepared.corpus, prepared.queries, prepared.qrels)


def write_manifest(directory: Path, config: PrepareConfig, counts: Counter) -> None:
    """Inputs as given, options, counts and each output's sha256; nothing that varies between runs."""
    outputs = sorted(p for p in directory.rglob("*") if p.is_file())
    atomic_write_json(directory / MANIFEST, {
        "ragtrain_version": VERSION,
        "inputs": [str(p) for p in config.inputs],
        "data_kind": data_kind_of(as_dict(config)),  # which defaults train takes (datadefaults.py)
        "options": {k: v for k, v in as_dict(config).items() if k not in ("inputs", "output_dir", "overwrite")},
        "counts": dict(sorted(counts.items())),
        "sha256": {p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in outputs},
    })
