"""evaluate(config): rank the corpus for every query with each model, score the rankings, report side by side.

A model is `bm25` (bm25s on the same texts), `hybrid:MODEL` (BM25 and MODEL fused, hybrid.py) or anything
`resolve_model_dir` accepts. Dense models are
searched exactly (search.py); corpus and query embeddings are cached on disk unless `use_cache` is off.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from ragtrain.commands.preflight import check_evaluate
from ragtrain.config.common import DEFAULT_HYBRID_WEIGHT, as_dict
from ragtrain.config.evaluate import BM25_ROW, EvaluateConfig
from ragtrain.data.evaldata import EvalData, dropped_message, load_eval_data
from ragtrain.errors import UserError
from ragtrain.files.atomic import atomic_write_json, atomic_write_text
from ragtrain.files.names import CARD
from ragtrain.messages import silence_this_process, tell, warn
from ragtrain.model.card import add_evaluation, evaluation_entry
from ragtrain.model.loading import load_encoder, resolve_model_dir
from ragtrain.model.matryoshka import truncate
from ragtrain.model.runtime import Runtime, evaluation_runtime
from ragtrain.model.settings import describe
from ragtrain.model.textspec import RAGTRAIN_CONFIG
from ragtrain.model.world import join_process_group, leave_process_group, world_from_env
from ragtrain.reporting.evaltable import results_table, run_file_paths, run_tag, trec_run_text
from ragtrain.retrieval.bm25 import bm25_search, build_bm25
from ragtrain.retrieval.cache import EmbeddingCache, default_cache_dir
from ragtrain.retrieval.embedding import DOCUMENTS, QUERIES, embed_parts
from ragtrain.retrieval.hybrid import HYBRID_PREFIX, HybridScorer, tune_weight
from ragtrain.retrieval.metrics import average, per_query_metrics
from ragtrain.retrieval.search import dense_search

LOG_WIDTH = 120  # the table's width when stdout is no terminal (a log): each model stays on one row


@dataclass
class ModelRun:
    """One model's run over the evaluation set: each query's top k, and how it was made."""

    indices: np.ndarray  # (queries, depth) corpus indices, best first
    scores: np.ndarray  # (queries, depth)
    timings: dict[str, float]
    details: dict  # what was loaded and how: resolved path, similarity, cache use


def run_bm25(data: EvalData, depth: int) -> ModelRun:
    """BM25 over the evaluation corpus: index, then search."""
    started = time.perf_counter()
    retriever = build_bm25(data.corpus_texts)
    indexed = time.perf_counter()
    indices, scores = bm25_search(retriever, data.query_texts, depth, len(data.corpus_texts))
    done = time.perf_counter()
    return ModelRun(indices, scores, {"index_s": indexed - started, "search_s": done - indexed}, {"similarity": "bm25"})


def run_dense(model: str, data: EvalData, config: EvaluateConfig, runtime: Runtime, cache: EmbeddingCache) -> ModelRun:
    """A dense model as its own files describe it (flags over them): load it, embed (or fetch from the cache)
    the corpus and the queries with their prompts, cut to --truncate-dim, search."""
    embedded, details, timings = embed_dense(model, {"corpus": data.corpus_texts, "queries": data.query_texts},
                                             config, runtime, cache)
    started = time.perf_counter()
    indices, scores = dense_search(embedded["queries"], embedded["corpus"], max(config.k_values))
    timings["search_s"] = time.perf_counter() - started
    return ModelRun(indices, scores, timings, details)


def run_hybrid(model: str, data: EvalData, config: EvaluateConfig, runtime: Runtime, cache: EmbeddingCache) -> ModelRun:
    """hybrid:MODEL: BM25 and MODEL's scores over the whole corpus, z-scored per query and fused (hybrid.py); the
    weight given, chosen on --hybrid-tune-split, or the default."""
    tune = tuning_data(config, data)
    embedded, details, timings = embed_dense(model[len(HYBRID_PREFIX):], dense_parts(model, data, tune), config,
                                             runtime, cache)
    started = time.perf_counter()
    scorer = HybridScorer(data.corpus_texts, embedded["corpus"])
    weight = DEFAULT_HYBRID_WEIGHT if config.hybrid_weight is None else config.hybrid_weight
    if tune is not None:
        weight, means = tune_weight(scorer, tune.query_texts, embedded["tuning queries"], tune.query_ids, tune.qrels,
                                    tune.corpus_ids)
        details["hybrid_tuning"] = {"split": config.hybrid_tune_split, "ndcg@10_by_weight": means}
    indices, scores = scorer.search(data.query_texts, embedded["queries"], weight, max(config.k_values))
    timings["search_s"] = time.perf_counter() - started
    details.update(similarity=f"hybrid ({weight:g} bm25 z + {1 - weight:g} {details['similarity']} z)",
                   hybrid_weight=weight)
    return ModelRun(indices, scores, timings, details)


def tuning_data(config: EvaluateConfig, data: EvalData) -> EvalData | None:
    """--hybrid-tune-split's queries, over the evaluated corpus; None without the option."""
    if not config.hybrid_tune_split:
        return None
    tune = load_eval_data(config.eval_data, config.hybrid_tune_split, "--hybrid-tune-split")
    if tune.corpus_ids != data.corpus_ids:
        raise UserError(f"--hybrid-tune-split {config.hybrid_tune_split} reads another corpus; tune on a split of the "
                        "same evaluation data")
    return tune


def dense_parts(model: str, data: EvalData, tune: EvalData | None) -> dict[str, list[str]]:
    """What a dense or hybrid row embeds, by part: the corpus, the queries, and a hybrid row's tuning queries."""
    parts = {"corpus": data.corpus_texts, "queries": data.query_texts}
    if model.startswith(HYBRID_PREFIX) and tune is not None:
        parts["tuning queries"] = tune.query_texts
    return parts


def embed_dense(model: str, parts: dict[str, list[str]], config: EvaluateConfig, runtime: Runtime,
                cache: EmbeddingCache) -> tuple[dict[str, np.ndarray], dict, dict[str, float]]:
    """Load a dense model and embed each part's texts (or fetch them from the cache): (embeddings by part,
    details, timings). A part whose name ends in "queries" goes through the model's query side. Cosine models'
    embeddings come normalised, cut to --truncate-dim where given."""
    started = time.perf_counter()
    model_dir = resolve_model_dir(model)
    encoder = load_encoder(model_dir, config.text_options(), dtype=runtime.weights_dtype).to(runtime.device)
    settings, dim = encoder.settings, encoder.output_size
    if config.truncate_dim is not None and config.truncate_dim > dim:
        raise UserError(f"--truncate-dim {config.truncate_dim} is above model {model}'s embedding size {dim}; pass at "
                        f"most {dim}")
    tell(describe(settings, model, f"{config.truncate_dim or dim} of {dim} dimensions"))
    timings = {"load_s": time.perf_counter() - started}
    sides = {part: (QUERIES if part.endswith("queries") else DOCUMENTS, texts) for part, texts in parts.items()}
    embedded = embed_parts(encoder, model_dir, sides, runtime, cache, config.batch_size)
    vectors = {part: truncate(emb, config.truncate_dim, settings.normalize) if config.truncate_dim else emb
               for part, emb in embedded.parts.items()}  # cached whole: any cut reuses the entry
    timings |= {f"encode_{part.replace(' ', '_')}_s": seconds for part, seconds in embedded.seconds.items()}
    return vectors, {"resolved": model_dir, "similarity": settings.similarity, "max_length": settings.max_length,
                     "precision": runtime.encode_precision, "cache": embedded.cache,
                     "dimensions": config.truncate_dim or dim, "query_prompt": settings.query_prompt,
                     "document_prompt": settings.document_prompt,
                     "cache_dir": str(cache.directory) if embedded.cache != "off" else None}, timings


def evaluate(config: EvaluateConfig, console: Console | None = None) -> dict:
    """Every model's run, scored, printed and written (rank 0). Under torchrun every rank encodes its share of each
    dense model's corpus and queries; rank 0 alone searches, scores and writes, and the others return {}."""
    config.validate()
    check_evaluate(config)
    world = world_from_env()
    if not world.is_main:
        silence_this_process()
    data = load_eval_data(config.eval_data, config.split)
    if message := dropped_message(data, config.eval_data):  # the numbers depend on which copy was kept: say so
        warn(message)
    # before any model loads: a device or precision this machine lacks fails at once
    runtime = None if all(m == BM25_ROW for m in config.models) else evaluation_runtime(
        config.device, config.precision, config.dtype, world.local_rank if world.is_distributed else None)
    for model in config.models:  # a mistyped path fails now, not after the models before it have run
        if model != BM25_ROW:
            resolve_model_dir(model.removeprefix(HYBRID_PREFIX))
    cache = EmbeddingCache((config.cache_dir or default_cache_dir()) if config.use_cache else None)
    join_process_group(world, runtime.device if runtime is not None else torch.device("cpu"))
    try:
        if not world.is_main:
            encode_share(config, data, runtime, cache)
            return {}
        results = run_models(config, data, runtime, cache)
    finally:
        leave_process_group(world)
    (console or Console(width=None if sys.stdout.isatty() else LOG_WIDTH)).print(results_table(results, config.k_values))
    if config.output:
        atomic_write_json(config.output, results)
    if config.update_card:
        update_cards(results, config)
    return results


def encode_share(config: EvaluateConfig, data: EvalData, runtime: Runtime | None, cache: EmbeddingCache) -> None:
    """A rank above 0 under torchrun: its share of every dense model's embeddings, in rank 0's order of calls."""
    tune = tuning_data(config, data)
    for model in config.models:
        if model != BM25_ROW:
            embed_dense(model.removeprefix(HYBRID_PREFIX), dense_parts(model, data, tune), config, runtime, cache)


def run_models(config: EvaluateConfig, data: EvalData, runtime: Runtime | None, cache: EmbeddingCache) -> dict:
    """Each model's metrics, details and timings (and run file), with the settings and the data they ran on."""
    results = {"settings": as_dict(config), "queries": len(data.query_ids), "corpus": len(data.corpus_ids),
               "data": {"eval_data": str(config.eval_data), "split": config.split, "queries": len(data.query_ids),
                        "corpus": len(data.corpus_ids), "excluded_queries": data.excluded_queries,
                        "dropped_duplicates": data.dropped},
               "models": {}}
    run_paths = run_file_paths(config.run_file, config.models) if config.run_file else [None] * len(config.models)
    for model, run_path in zip(config.models, run_paths):
        started = time.perf_counter()
        run = (run_bm25(data, max(config.k_values)) if model == BM25_ROW
               else run_hybrid(model, data, config, runtime, cache) if model.startswith(HYBRID_PREFIX)
               else run_dense(model, data, config, runtime, cache))
        rankings = {q: [data.corpus_ids[i] for i in row] for q, row in zip(data.query_ids, run.indices)}
        per_query = per_query_metrics(rankings, data.qrels, config.k_values)
        run.timings["total_s"] = time.perf_counter() - started
        results["models"][model] = {"metrics": average(per_query, config.k_values), **run.details,
                                    "timings": run.timings, "per_query": per_query}
        if run_path is not None:
            atomic_write_text(run_path, trec_run_text(data.query_ids, data.corpus_ids, run.indices, run.scores,
                                                      run_tag(model)))
            results["models"][model]["run_file"] = str(run_path)
    return results


def update_cards(results: dict, config: EvaluateConfig) -> None:
    """Each ragtrain model directory evaluated gets this evaluation in its card (modelcard.add_evaluation),
    compared with the first model unless it is the first; the others (bm25, a Hub model) have no card to update."""
    reference = config.models[0]
    saved = [model for model in config.models  # a hybrid row's figures are not its dense model's own
             if model != BM25_ROW and not model.startswith(HYBRID_PREFIX) and results["models"][model].get("resolved")
             and (Path(results["models"][model]["resolved"]) / RAGTRAIN_CONFIG).is_file()]
    if not saved:  # the base model beside a fine-tune has no card, and needs no word; no card at all does
        warn("--update-card: none of the models is one ragtrain saved, so no model card was updated")
    for model in saved:
        resolved = results["models"][model]["resolved"]
        compared = reference if model != reference else None
        add_evaluation(Path(resolved), evaluation_entry(
            results["models"][model], compared, results["models"][reference] if compared else None, results["data"],
            results["models"][model]["max_length"], config.output))
        tell(f"model card updated: {Path(resolved) / CARD}")
