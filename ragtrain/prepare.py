"""Raw documents (or labelled pairs, or a BEIR set) -> training triples, document-level splits and a BEIR
evaluation set, written atomically with a manifest.

Label-free mode: documents are split into passages, passages are deduplicated, whole documents are
assigned to train / val / test, queries are made from passages, and negatives are mined inside each split.
Evaluation queries come only from held-out documents; the evaluation corpus holds every passage.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ragtrain import __version__
from ragtrain.beir import write_beir
from ragtrain.config import PrepareConfig, as_dict
from ragtrain.documents import Fields, Passage, deduplicate, read_documents, split_passages
from ragtrain.errors import UserError
from ragtrain.fileio import atomic_directory, atomic_write_json, atomic_write_text, jsonl_text, recover
from ragtrain.negatives import MiningOptions, mine_within
from ragtrain.queries import Query, make_queries, parse_strategies
from ragtrain.splits import SPLITS, split_groups

@dataclass
class Prepared:
    """Everything that is written: triples, and the evaluation set in BEIR form."""

    train: list[dict]
    val: list[dict]
    corpus: list[dict]  # {"_id", "title", "text"}
    queries: list[dict]  # {"_id", "text"}
    qrels: dict[str, list[tuple[str, str, int]]]  # split -> (query id, corpus id, score)


@dataclass
class PrepareSummary:
    output_dir: Path
    counts: Counter = field(default_factory=Counter)


def prepare(config: PrepareConfig) -> PrepareSummary:
    recover(config.output_dir)  # first: an output set aside by a killed run is back before it is checked
    config.validate()
    counts: Counter = Counter()
    if config.beir is not None:
        from ragtrain.labelled import prepare_beir

        prepared = prepare_beir(config, counts)
    elif config.pairs is not None:
        from ragtrain.labelled import prepare_pairs

        prepared = prepare_pairs(config, counts)
    else:
        prepared = prepare_documents(config, counts)
    if not prepared.train:
        raise UserError("no training triples could be made: the documents are too few or too short for the "
                        "splits asked; add documents or lower --val-fraction/--test-fraction")
    counts.update(train_triples=len(prepared.train), val_triples=len(prepared.val), eval_corpus=len(prepared.corpus))
    counts.update({f"eval_queries_{split}": len({q for q, _, _ in rows}) for split, rows in prepared.qrels.items()})
    with atomic_directory(config.output_dir, config.overwrite) as tmp:
        write_outputs(tmp, prepared)
        write_manifest(tmp, config, counts)
    return PrepareSummary(config.output_dir, counts)


def mining_options(config: PrepareConfig) -> MiningOptions:
    return MiningOptions(config.negatives, config.negative_range, config.false_negative_margin,
                         config.same_document_negatives, config.seed, config.miner, config.model)


def fields_of(config: PrepareConfig) -> Fields:
    return Fields(config.text_field, config.title_field, config.id_field)


def load_passages(config: PrepareConfig, counts: Counter) -> list[Passage]:
    """Read, split and deduplicate; no usable document is a UserError."""
    documents = read_documents(config.inputs, fields_of(config), counts)
    if not documents:
        raise UserError(f"no usable documents in {', '.join(map(str, config.inputs))} (every file was empty, "
                        "binary or unsupported); pass .txt, .md, .rst, .html, .jsonl, .json, .csv or .tsv with text")
    passages = [p for doc in tqdm(documents, desc="splitting", unit="doc", disable=None)
                for p in split_passages(doc, config.max_words, config.overlap)]
    counts["passages_split"] += len(passages)
    passages = deduplicate(passages, counts)
    counts["passages"] += len(passages)
    return passages


def prepare_documents(config: PrepareConfig, counts: Counter) -> Prepared:
    passages = load_passages(config, counts)
    split_of = split_groups([p.doc_id for p in passages], config.val_fraction, config.test_fraction, config.seed)
    counts.update(f"documents_{split_of[d]}" for d in {p.doc_id for p in passages})
    queries = make_queries(passages, parse_strategies(config.query_strategy), config.cloze_keep_probability,
                           random.Random(config.seed))
    by_split: dict[str, list[Query]] = {split: [] for split in SPLITS}
    for query in queries:
        split = split_of[passages[query.positive].doc_id]
        if split == "train" or query.strategy != "title":  # the eval corpus carries titles: no title queries
            by_split[split].append(query)
            counts[f"queries_{query.strategy}"] += 1
    texts, doc_ids = [p.text for p in passages], [p.doc_id for p in passages]
    triples = {}
    for split in ("train", "val"):
        allowed = [i for i, p in enumerate(passages) if split_of[p.doc_id] == split]
        chosen = by_split[split]
        negatives = mine_within(allowed, texts, doc_ids, [q.text for q in chosen], [q.relevant for q in chosen],
                                mining_options(config), counts)
        triples[split] = [{"query": q.text, "positive": q.positive_text, "negatives": [texts[i] for i in negs]}
                          for q, negs in zip(chosen, negatives)]
    return Prepared(triples["train"], triples["val"], *passage_eval_set(passages, by_split))


def passage_eval_set(passages: list[Passage], by_split: dict[str, list[Query]]):
    """Corpus = every passage (a held-out query's own sentence or span removed from its passage),
    queries and qrels from the val and test documents only."""
    eval_text = {q.positive: q.eval_text for split in ("val", "test") for q in by_split[split]
                 if q.strategy in ("cloze", "crop")}
    corpus = [{"_id": p.passage_id, "title": p.title, "text": eval_text.get(i, p.text)} for i, p in enumerate(passages)]
    queries, qrels = [], {}
    for split in ("val", "test"):
        qrels[split] = []
        for n, query in enumerate(by_split[split]):
            query_id = f"{split}-{n}"
            queries.append({"_id": query_id, "text": query.text})
            qrels[split].extend((query_id, passages[i].passage_id, 1) for i in query.relevant)
    return corpus, queries, qrels


def write_outputs(directory: Path, prepared: Prepared) -> None:
    atomic_write_text(directory / "train.jsonl", jsonl_text(prepared.train))
    atomic_write_text(directory / "val.jsonl", jsonl_text(prepared.val))
    write_beir(directory / "eval", prepared.corpus, prepared.queries, prepared.qrels)


def write_manifest(directory: Path, config: PrepareConfig, counts: Counter) -> None:
    """Inputs as given, options, counts and each output's sha256; nothing that varies between runs."""
    outputs = sorted(p for p in directory.rglob("*") if p.is_file())
    atomic_write_json(directory / "manifest.json", {
        "ragtrain_version": __version__,
        "inputs": [str(p) for p in config.inputs],
        "options": {k: v for k, v in as_dict(config).items() if k not in ("inputs", "output_dir", "overwrite")},
        "counts": dict(sorted(counts.items())),
        "sha256": {p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in outputs},
    })


def summary_table(summary: PrepareSummary):
    """The counts as a rich table, for the CLI to print."""
    from rich.table import Table

    table = Table(title=f"prepare-data -> {summary.output_dir}")
    table.add_column("count")
    table.add_column("value", justify="right")
    for name, value in sorted(summary.counts.items()):
        table.add_row(name.replace("_", " "), f"{value:,}")
    return table
