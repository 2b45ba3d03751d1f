"""Raw documents (or labelled pairs, or a BEIR set) -> training triples, document-level splits and a BEIR
evaluation set, written atomically with a manifest.

Label-free mode: documents are split into passages, passages are deduplicated, whole documents are
assigned to train / val / test, queries are made from passages, and negatives are mined inside each split.
Evaluation queries come only from held-out documents; the evaluation corpus holds every passage.
"""

from __future__ import annotations

import contextlib
import random
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ragtrain.commands.preflight import check_prepare
from ragtrain.config.common import DEFAULT_MODEL
from ragtrain.config.prepare import HYBRID_TEACHER, PrepareConfig, parse_strategies
from ragtrain.data.beir import document_text
from ragtrain.data.counts import counts_table
from ragtrain.data.documents import Passage, load_passages
from ragtrain.data.labelled import prepare_beir, prepare_pairs
from ragtrain.data.prepared import HELD_OUT, Prepared, held_out_queries, write_manifest, write_prepared
from ragtrain.data.queries import Query, make_queries
from ragtrain.data.readers import Fields
from ragtrain.data.splits import SPLITS, same_share, sample_by_passage, split_groups
from ragtrain.errors import UserError
from ragtrain.files.atomic import atomic_directory, recover
from ragtrain.files.jsonfiles import read_jsonl, write_jsonl
from ragtrain.messages import Progress, silence_this_process, tell, warn
from ragtrain.model.world import WorldInfo, barrier, join_process_group, leave_process_group, world_from_env
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
    """Prepare and write the outputs. Under torchrun with a stage that embeds (dense miner, dense round trip, hybrid
    teacher) every rank runs the same steps, encoding its share of each corpus, and rank 0 alone writes --output-dir;
    without one there is nothing to share and the ranks above 0 return at once."""
    world = world_from_env()
    if world.is_main:
        recover(config.output_dir)  # first: an output set aside by a killed run is back before it is checked
    else:
        silence_this_process()
    config.validate()
    check_prepare(config)
    sharing = world.is_distributed and needs_dense_model(config)
    if world.is_distributed and not sharing and not world.is_main:
        return PrepareSummary(config.output_dir)
    if config.threads:
        import torch  # late: a bm25-only run never loads torch

        torch.set_num_threads(config.threads)
    runtime = one_runtime(config, world if sharing else WorldInfo())
    dense = dense_model(config, runtime) if needs_dense_model(config) else None
    if sharing:
        join_process_group(world, runtime.device)
    try:
        counts, notes = prepare_into(config, runtime, dense, world if sharing else WorldInfo())
        barrier(world if sharing else WorldInfo())  # no rank returns before rank 0's output is in place
    finally:
        leave_process_group(world if sharing else WorldInfo())
    return PrepareSummary(config.output_dir, counts, notes, short_of_negatives(config, counts))


def prepare_into(config: PrepareConfig, runtime: Runtime | None, dense: Embedder | None,
                 world: WorldInfo) -> tuple[Counter, list[str]]:
    """Make and write every output as it is made (rank 0: into --output-dir, swapped in whole at the end; a rank
    above 0: the triples alone, which a hybrid teacher reads back, into a temporary folder); the counts and the
    notes for the user."""
    counts: Counter = Counter()
    mining = MiningOptions(config.negatives, config.negative_range, config.false_negative_margin,
                           config.same_document_negatives, config.seed, dense if config.miner != "bm25" else None,
                           config.hybrid_weight if config.miner == "hybrid" else None)
    folder = atomic_directory(config.output_dir, config.overwrite) if world.is_main else temporary_folder()
    with folder as tmp:
        if config.beir is not None:
            prepared = prepare_beir(config, mining, counts)
        elif config.pairs is not None:
            prepared = prepare_pairs(config, mining, counts)
        else:
            prepared = prepare_documents(config, mining, counts, dense if config.filter in ("dense", "hybrid") else None)
        if world.is_main:
            counts.update(write_prepared(tmp, prepared))
        else:
            counts.update(train_triples=write_jsonl(tmp / "train.jsonl", prepared.train),
                          val_triples=write_jsonl(tmp / "val.jsonl", prepared.val))
        if not counts["train_triples"]:
            raise UserError(no_triples_message(counts))
        if config.teacher == HYBRID_TEACHER or (config.teacher and world.is_main):  # a cross-encoder shares nothing
            score_with_teacher(tmp, prepared, config, counts, runtime, dense)
        counts.update({f"eval_queries_{split}": len({q for q, _, _ in rows}) for split, rows in prepared.qrels.items()})
        if world.is_main:
            write_manifest(tmp, config, counts)
    return counts, prepared.notes


@contextlib.contextmanager
def temporary_folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="ragtrain-prepare-rank-") as folder:
        yield Path(folder)


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
    return config.miner != "bm25" or config.teacher == HYBRID_TEACHER or (config.uses_generator and config.filter in ("dense", "hybrid"))


def one_runtime(config: PrepareConfig, world: WorldInfo) -> Runtime | None:
    """Where every model of this run computes (cuda, then mps, then cpu; fp32; under torchrun each rank's own GPU),
    or None when no stage runs one here (a local generator picks its own --generator-device)."""
    if not (needs_dense_model(config) or config.teacher):
        return None
    from ragtrain.model.runtime import Runtime, resolve_device  # late: a bm25-only run never loads torch

    return Runtime(resolve_device("auto", world.local_rank if world.is_distributed else None))


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
    by_split = queries_by_split(config, passages, split_of, counts, dense_filter)
    texts, doc_ids = [p.text for p in passages], [p.doc_id for p in passages]  # references: no text is copied
    chosen = capped(by_split, config, counts)
    negatives = {}
    for split in ("train", "val"):
        allowed = [i for i, p in enumerate(passages) if split_of[p.doc_id] == split]
        negatives[split] = mine_within(allowed, texts, doc_ids, [q.text for q in chosen[split]],
                                       [q.relevant for q in chosen[split]], mining, counts)
    # the corpus holds every passage, a held-out query's own sentence or span removed from its passage
    eval_query = {q.positive: q for split in HELD_OUT for q in by_split[split] if q.strategy in ("cloze", "crop")}
    corpus = corpus_rows(passages, eval_query)
    eval_queries, qrels = held_out_queries({split: [(q.text, [passages[i].passage_id for i in q.relevant])
                                                    for q in by_split[split]] for split in HELD_OUT})
    return Prepared(triple_rows(chosen["train"], negatives["train"], texts, "train.jsonl"),
                    triple_rows(chosen["val"], negatives["val"], texts, "val.jsonl"), corpus, eval_queries, qrels, texts)


def queries_by_split(config: PrepareConfig, passages: list[Passage], split_of: dict[str, str], counts: Counter,
                     dense_filter: Embedder | None) -> dict[str, list[Query]]:
    """Label-free (and generated) queries of each split's passages; title queries only in train, since the
    evaluation corpus carries titles."""
    strategies = parse_strategies(config.query_strategy)
    queries = make_queries(passages, tuple(s for s in strategies if s != "llm"), config.cloze_keep_probability,
                           random.Random(config.seed))
    if "llm" in strategies:
        from ragtrain.generation.generated import generated_queries  # late: only the llm strategy needs a generator

        queries += generated_queries(config, passages, split_of, counts, dense_filter)
    by_split: dict[str, list[Query]] = {split: [] for split in SPLITS}
    for query in queries:
        split = split_of[passages[query.positive].doc_id]
        if split == "train" or query.strategy != "title":
            by_split[split].append(query)
            counts[f"queries_{query.strategy}"] += 1
    return by_split


def capped(by_split: dict[str, list[Query]], config: PrepareConfig, counts: Counter) -> dict[str, list[Query]]:
    """The train and val queries that make triples under --max-triples: those of a seeded sample of passages, val
    keeping the share train keeps."""
    train, val = by_split["train"], by_split["val"]
    limits = {"train": config.triples_cap, "val": same_share(config.triples_cap, len(train), len(val))}
    chosen = {}
    for split in ("train", "val"):
        queries = by_split[split]
        chosen[split] = [queries[n] for n in sample_by_passage([q.positive for q in queries], limits[split], config.seed)]
        if len(chosen[split]) < len(queries):
            counts[f"triples_left_out_by_max_triples_{split}"] += len(queries) - len(chosen[split])
    return chosen


def corpus_rows(passages: list[Passage], eval_query: dict[int, Query]) -> Iterator[dict]:
    """The evaluation corpus, every passage, made as it is written."""
    with Progress(len(passages), "writing eval/corpus.jsonl", "passages") as progress:
        for i, p in enumerate(passages):
            yield {"_id": p.passage_id, "title": p.title, "text": eval_query[i].eval_text if i in eval_query else p.text}
            progress.update()


def triple_rows(queries: list[Query], negatives: list[list[int]], texts: list[str], name: str) -> Iterator[dict]:
    """Each query's triple, made as it is written."""
    with Progress(len(queries), f"writing {name}", "triples") as progress:
        for query, negs in zip(queries, negatives):
            yield {"query": query.text, "positive": query.positive_text, "negatives": [texts[i] for i in negs]}
            progress.update()


def score_with_teacher(directory: Path, prepared: Prepared, config: PrepareConfig, counts: Counter, runtime: Runtime,
                       dense: Embedder | None) -> None:
    """Teacher scores on every train and val triple, read back from `directory` and written again; the z-scores'
    corpus is every passage (document mode) or the evaluation corpus, with the triples' own texts. The triples are
    held in memory here: a hybrid teacher's z-scores span every candidate."""
    from ragtrain.model.crossencoder import load_cross_encoder
    from ragtrain.retrieval.teacher import add_teacher_scores

    train, val = read_jsonl(directory / "train.jsonl"), read_jsonl(directory / "val.jsonl")
    corpus = prepared.passages or [document_text(doc) for doc in prepared.corpus]
    teacher = dense if config.teacher == HYBRID_TEACHER else load_cross_encoder(config.teacher, runtime)
    add_teacher_scores(train + val, corpus, teacher, config.hybrid_weight, runtime, counts)
    write_jsonl(directory / "train.jsonl", train)
    write_jsonl(directory / "val.jsonl", val)


def print_summary(summary: PrepareSummary) -> None:
    """The counts in words, then the notes, then the warnings, for the CLI."""
    from rich.console import Console

    Console().print(counts_table(f"prepare-data -> {summary.output_dir}", summary.counts))
    for note in summary.notes:
        tell(note)
    for warning in summary.warnings:
        warn(warning)
