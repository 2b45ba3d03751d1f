"""Raw documents (or labelled pairs, or a BEIR set) -> training triples, document-level splits and a BEIR
evaluation set, written atomically with a manifest.

Label-free mode: documents are split into passages, passages are deduplicated, whole documents are
assigned to train / val / test, queries are made from passages, and negatives are mined inside each split.
Evaluation queries come only from held-out documents; the evaluation corpus holds every passage.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ragtrain.commands.preflight import check_prepare
from ragtrain.config.common import DEFAULT_MODEL
from ragtrain.config.prepare import HYBRID_TEACHER, PrepareConfig, parse_strategies
from ragtrain.data.beir import document_text
from ragtrain.data.counts import counts_table
from ragtrain.data.documents import load_passages
from ragtrain.data.labelled import prepare_beir, prepare_pairs
from ragtrain.data.prepared import HELD_OUT, Prepared, held_out_queries, write_manifest, write_prepared
from ragtrain.data.queries import Query, make_queries
from ragtrain.data.readers import Fields
from ragtrain.data.splits import SPLITS, split_groups
from ragtrain.errors import UserError
from ragtrain.files.atomic import atomic_directory, recover
from ragtrain.messages import tell, warn
from ragtrain.retrieval.negatives import MiningOptions, mine_within

if TYPE_CHECKING:  # torch loads only where a stage runs a model
    from ragtrain.model.runtime import Runtime
    from ragtrain.retrieval.embedding import Embedder


@dataclass
class PrepareSummary:
    output_dir: Path
    counts: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)  # said after the counts: which columns of --pairs were read
    warnings: list[str] = field(default_factory=list)  # what the user should act on, said last


def prepare(config: PrepareConfig) -> PrepareSummary:
    recover(config.output_dir)  # first: an output set aside by a killed run is back before it is checked
    config.validate()
    check_prepare(config)
    if config.threads:
        import torch  # late: a bm25-only run never loads torch

        torch.set_num_threads(config.threads)
    counts: Counter = Counter()
    runtime = one_runtime(config)
    dense = dense_model(config, runtime) if needs_dense_model(config) else None
    mining = MiningOptions(config.negatives, config.negative_range, config.false_negative_margin,
                           config.same_document_negatives, config.seed, dense if config.miner == "dense" else None)
    if config.beir is not None:
        prepared = prepare_beir(config, mining, counts)
    elif config.pairs is not None:
        prepared = prepare_pairs(config, mining, counts)
    else:
        prepared = prepare_documents(config, mining, counts, dense if config.filter == "dense" else None)
    if not prepared.train:
        raise UserError(no_triples_message(counts))
    if config.teacher:
        score_with_teacher(prepared, config, counts, runtime, dense)
    counts.update(train_triples=len(prepared.train), val_triples=len(prepared.val), eval_corpus=len(prepared.corpus))
    counts.update({f"eval_queries_{split}": len({q for q, _, _ in rows}) for split, rows in prepared.qrels.items()})
    with atomic_directory(config.output_dir, config.overwrite) as tmp:
        write_prepared(tmp, prepared)
        write_manifest(tmp, config, counts)
    return PrepareSummary(config.output_dir, counts, prepared.notes, short_of_negatives(config, counts))


def short_of_negatives(config: PrepareConfig, counts: Counter) -> list[str]:
    """A warning when triples got fewer mined negatives than --negatives: they train with fewer hard negatives
    than asked, and the fix is in the options or the data."""
    short = counts.get("triples_short_of_negatives", 0)
    if not short:
        return []
    first, last = config.negative_range
    return [f"{short:,} of {counts['train_triples'] + counts['val_triples']:,} triples have fewer than --negatives "
            f"{config.negatives} hard negatives: ranks {first}-{last} of the miner held too few candidates once likely "
            "positives and same-document passages were skipped; widen --negative-range (e.g. "
            f"{first}-{last * 2}), lower --negatives, or add documents"]


def no_triples_message(counts: Counter) -> str:
    """Why no training triple was made: no query survived (with what dropped the generated ones), or too few
    documents for the splits."""
    if any(v for k, v in counts.items() if k.startswith("queries_")):
        return ("no training triples could be made: the documents are too few or too short for the splits asked; add "
                "documents or lower --val-fraction/--test-fraction")
    dropped = [f"{k.removeprefix('llm_').replace('_', ' ')} {v}" for k, v in sorted(counts.items())
               if v and (k.startswith("llm_dropped_") or k == "llm_unusable_replies")]
    why = f" (generated: {', '.join(dropped)})" if dropped else ""
    return (f"no training triples could be made: no query survived{why}; add a --query-strategy (e.g. heading,crop), "
            "or look at what the generator writes")


def needs_dense_model(config: PrepareConfig) -> bool:
    """Whether a stage embeds with --model: the dense miner, a dense round trip, the hybrid teacher."""
    return config.miner == "dense" or config.teacher == HYBRID_TEACHER or (config.uses_generator and config.filter == "dense")


def one_runtime(config: PrepareConfig) -> Runtime | None:
    """Where every model of this run computes (cuda, then mps, then cpu; fp32), or None when no stage runs one here
    (a local generator picks its own --generator-device)."""
    if not (needs_dense_model(config) or config.teacher):
        return None
    from ragtrain.model.runtime import Runtime, resolve_device  # late: a bm25-only run never loads torch

    return Runtime(resolve_device("auto"))


def dense_model(config: PrepareConfig, runtime: Runtime) -> Embedder:
    """--model (default all-MiniLM-L6-v2), loaded once for every stage that embeds, with its own text settings and
    the prompt flags over them."""
    from ragtrain.model.loading import load_encoder
    from ragtrain.model.settings import describe
    from ragtrain.retrieval.cache import EmbeddingCache
    from ragtrain.retrieval.embedding import Embedder

    name = config.model or DEFAULT_MODEL
    encoder = load_encoder(name, config.text_options(), dtype=runtime.weights_dtype).to(runtime.device)
    tell("dense model: " + describe(encoder.settings, name))
    return Embedder(encoder, name, runtime, EmbeddingCache(None))


def prepare_documents(config: PrepareConfig, mining: MiningOptions, counts: Counter,
                      dense_filter: Embedder | None = None) -> Prepared:
    passages = load_passages(config.inputs, Fields.of(config), config.max_words, config.overlap, counts)
    split_of = split_groups([p.doc_id for p in passages], config.val_fraction, config.test_fraction, config.seed)
    counts.update(f"documents_{split_of[d]}" for d in {p.doc_id for p in passages})
    strategies = parse_strategies(config.query_strategy)
    queries = make_queries(passages, tuple(s for s in strategies if s != "llm"), config.cloze_keep_probability,
                           random.Random(config.seed))
    if "llm" in strategies:
        from ragtrain.generation.generated import generated_queries  # late: only the llm strategy needs a generator

        queries += generated_queries(config, passages, split_of, counts, dense_filter)
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


def score_with_teacher(prepared: Prepared, config: PrepareConfig, counts: Counter, runtime: Runtime,
                       dense: Embedder | None) -> None:
    """Teacher scores on every train and val triple; the z-scores' corpus is every passage (document mode) or
    the evaluation corpus, with the triples' own texts."""
    from ragtrain.model.crossencoder import load_cross_encoder
    from ragtrain.retrieval.teacher import add_teacher_scores

    corpus = prepared.passages or [document_text(doc) for doc in prepared.corpus]
    teacher = dense if config.teacher == HYBRID_TEACHER else load_cross_encoder(config.teacher, runtime)
    add_teacher_scores(prepared.train + prepared.val, corpus, teacher, config.hybrid_weight, runtime, counts)


def print_summary(summary: PrepareSummary) -> None:
    """The counts in words, then the notes, then the warnings, for the CLI."""
    from rich.console import Console

    Console().print(counts_table(f"prepare-data -> {summary.output_dir}", summary.counts))
    for note in summary.notes:
        tell(note)
    for warning in summary.warnings:
        warn(warning)
