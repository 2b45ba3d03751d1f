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

from ragtrain import __version__
from ragtrain.config.commands import DEFAULT_MODEL, PrepareConfig, as_dict, parse_strategies
from ragtrain.config.datakinds import data_kind_of
from ragtrain.data.beir import document_text
from ragtrain.data.documents import load_passages
from ragtrain.data.labelled import prepare_beir, prepare_pairs
from ragtrain.data.prepared import HELD_OUT, Prepared, held_out_queries, write_prepared
from ragtrain.data.queries import Query, make_queries
from ragtrain.data.splits import SPLITS, split_groups
from ragtrain.errors import UserError
from ragtrain.files.atomic import atomic_directory, atomic_write_json, recover
from ragtrain.files.names import MANIFEST
from ragtrain.retrieval.negatives import MiningOptions, mine_within


@dataclass
class PrepareSummary:
    output_dir: Path
    counts: Counter = field(default_factory=Counter)


def prepare(config: PrepareConfig) -> PrepareSummary:
    recover(config.output_dir)  # first: an output set aside by a killed run is back before it is checked
    config.validate()
    if config.threads:
        import torch  # late: a bm25-only run never loads torch

        torch.set_num_threads(config.threads)
    counts: Counter = Counter()
    mining = mining_options(config)
    if config.beir is not None:
        prepared = prepare_beir(config, mining, counts)
    elif config.pairs is not None:
        prepared = prepare_pairs(config, mining, counts)
    else:
        prepared = prepare_documents(config, mining, counts)
    if not prepared.train:
        raise UserError("no training triples could be made: the documents are too few or too short for the "
                        "splits asked; add documents or lower --val-fraction/--test-fraction")
    if config.teacher:
        score_with_teacher(prepared, config, counts)
    counts.update(train_triples=len(prepared.train), val_triples=len(prepared.val), eval_corpus=len(prepared.corpus))
    counts.update({f"eval_queries_{split}": len({q for q, _, _ in rows}) for split, rows in prepared.qrels.items()})
    with atomic_directory(config.output_dir, config.overwrite) as tmp:
        write_prepared(tmp, prepared)
        write_manifest(tmp, config, counts)
    return PrepareSummary(config.output_dir, counts)


def mining_options(config: PrepareConfig) -> MiningOptions:
    """The miner's options, and for the dense miner where it encodes (cuda, then mps, then cpu; fp32)."""
    runtime = None
    if config.miner == "dense":
        from ragtrain.model.runtime import Runtime, resolve_device  # late: torch loads only for the dense miner

        runtime = Runtime(resolve_device("auto"))
    return MiningOptions(config.negatives, config.negative_range, config.false_negative_margin,
                         config.same_document_negatives, config.seed, config.miner, config.model, runtime,
                         (config.query_prompt, config.document_prompt))


def prepare_documents(config: PrepareConfig, mining: MiningOptions, counts: Counter) -> Prepared:
    passages = load_passages(config.inputs, config.fields, config.max_words, config.overlap, counts)
    split_of = split_groups([p.doc_id for p in passages], config.val_fraction, config.test_fraction, config.seed)
    counts.update(f"documents_{split_of[d]}" for d in {p.doc_id for p in passages})
    strategies = parse_strategies(config.query_strategy)
    queries = make_queries(passages, tuple(s for s in strategies if s != "llm"), config.cloze_keep_probability,
                           random.Random(config.seed))
    if "llm" in strategies:
        from ragtrain.generation.generated import generated_queries  # late: only the llm strategy needs a generator

        queries += generated_queries(config, passages, split_of, counts)
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
                                mining, counts)
        triples[split] = [{"query": q.text, "positive": q.positive_text, "negatives": [texts[i] for i in negs]}
                          for q, negs in zip(chosen, negatives)]
    # the corpus holds every passage, a held-out query's own sentence or span removed from its passage
    eval_text = {q.positive: q.eval_text for split in HELD_OUT for q in by_split[split] if q.strategy in ("cloze", "crop")}
    corpus = [{"_id": p.passage_id, "title": p.title, "text": eval_text.get(i, p.text)} for i, p in enumerate(passages)]
    eval_queries, qrels = held_out_queries({split: [(q.text, [passages[i].passage_id for i in q.relevant])
                                                    for q in by_split[split]] for split in HELD_OUT})
    return Prepared(triples["train"], triples["val"], corpus, eval_queries, qrels, texts)


def score_with_teacher(prepared: Prepared, config: PrepareConfig, counts: Counter) -> None:
    """Teacher scores on every train and val triple; the z-scores' corpus is every passage (document mode) or
    the evaluation corpus, with the triples' own texts."""
    from ragtrain.model.runtime import Runtime, resolve_device  # late: torch loads only for a teacher
    from ragtrain.retrieval.teacher import add_teacher_scores

    corpus = prepared.passages or [document_text(doc) for doc in prepared.corpus]
    add_teacher_scores(prepared.train + prepared.val, corpus, config.teacher, config.model or DEFAULT_MODEL,
                       config.hybrid_weight, Runtime(resolve_device("auto")), counts)


def write_manifest(directory: Path, config: PrepareConfig, counts: Counter) -> None:
    """Inputs as given, options, counts and each output's sha256; nothing that varies between runs."""
    outputs = sorted(p for p in directory.rglob("*") if p.is_file())
    atomic_write_json(directory / MANIFEST, {
        "ragtrain_version": __version__,
        "inputs": [str(p) for p in config.inputs],
        "data_kind": data_kind_of(as_dict(config)),  # which defaults train takes (datadefaults.py)
        "options": {k: v for k, v in as_dict(config).items() if k not in ("inputs", "output_dir", "overwrite")},
        "counts": dict(sorted(counts.items())),
        "sha256": {p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in outputs},
    })


def counts_table(summary: PrepareSummary):
    """The counts as a rich table, for the CLI to print."""
    from rich.table import Table

    table = Table(title=f"prepare-data -> {summary.output_dir}")
    table.add_column("count")
    table.add_column("value", justify="right")
    for name, value in sorted(summary.counts.items()):
        table.add_row(name.replace("_", " "), f"{value:,}")
    return table
