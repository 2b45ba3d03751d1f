"""prepare-data's llm query strategy: a generator from the options, queries for the chosen passages (cached),
cleaned, and kept only when they find their own passage again (the round-trip filter).

The round trip ranks each query against the passages of its own split (the corpus its negatives are mined
from) with BM25, a dense model, or both fused (hybrid, as evaluate's hybrid row and the hybrid teacher): BM25
alone keeps only the queries BM25 already finds, which teach a dense student little it does not know; a query whose passage is not within --filter-rank is dropped. What it keeps
is InPars' and Promptagator's consistency filter: a query that cannot find its passage teaches nothing but
noise, and one a small generator wrote off-topic is caught here.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from ragtrain.config.prepare import PrepareConfig
from ragtrain.data.documents import Passage
from ragtrain.data.queries import Query
from ragtrain.generation.generator import LocalGenerator, Sampling, ServerGenerator, ServerOptions
from ragtrain.generation.querygen import (
    QueryCache,
    clean_outputs,
    default_prompt,
    default_query_cache_dir,
    examples_prompt,
    generate_outputs,
    prompt_examples,
    read_examples,
    read_prompt,
    sample_passages,
)
from ragtrain.model.world import barrier, current_world
from ragtrain.retrieval.bm25 import bm25_search, build_bm25

if TYPE_CHECKING:  # torch loads only for a dense or hybrid round trip
    from ragtrain.retrieval.embedding import Embedder


def build_generator(config: PrepareConfig):
    """The local or server generator the options name (a local model loads only when it must generate)."""
    sampling = Sampling(config.max_new_tokens, config.generator_temperature, config.generator_top_p,
                        config.queries_per_passage, config.seed)
    if config.generator_url:
        options = ServerOptions(config.generator_url, config.generator_model or "", config.generator_api_key_env,
                                config.generator_concurrency, config.generator_timeout, config.generator_retries)
        return ServerGenerator(options, sampling, config.generator_batch_size)
    from ragtrain.model.runtime import resolve_device  # late: torch loads only for a local generator

    return LocalGenerator(config.generator or "", sampling, resolve_device(config.generator_device),
                          config.generator_batch_size)


def generated_queries(config: PrepareConfig, passages: list[Passage], split_of: dict[str, str], counts: Counter,
                      dense: Embedder | None = None) -> list[Query]:
    """Cleaned, round-trip-filtered generated queries, each with its passage as positive (and only relevant one);
    `dense` is the model of a --filter dense or hybrid round trip."""
    pool = [i for i, p in enumerate(passages) if config.generate_eval_queries or split_of[p.doc_id] == "train"]
    chosen = [pool[n] for n in sample_passages(len(pool), config.generator_max_passages, config.seed)]
    user_examples = read_examples(config.generator_examples) if config.generator_examples else []
    template = (read_prompt(config.generator_prompt) if config.generator_prompt
                else examples_prompt(user_examples) if user_examples else default_prompt())
    generator = build_generator(config)
    cache = QueryCache(config.generator_cache_dir or default_query_cache_dir(), generator.identity)
    world = current_world()  # under torchrun (a dense round trip shares its encoding) rank 0 alone generates:
    if not world.is_main:  # the others wait, then find every answer in the query cache (on a file system they share)
        barrier(world)
    outputs = generate_outputs([(passages[i].title, passages[i].text) for i in chosen], generator, template, cache,
                               counts)
    if world.is_main:
        barrier(world)
    examples, seen = prompt_examples(template, user_examples), set()
    candidates = [(query, i) for i, texts in zip(chosen, outputs)
                  for query in clean_outputs(texts, f"{passages[i].title} {passages[i].text}", examples, seen, counts)]
    counts["llm_queries_cleaned"] += len(candidates)
    kept = round_trip(candidates, passages, split_of, config, counts, dense)
    return [Query(query, i, passages[i].text, (i,), "llm") for query, i in kept]


def round_trip(candidates: list[tuple[str, int]], passages: list[Passage], split_of: dict[str, str],
               config: PrepareConfig, counts: Counter, dense: Embedder | None = None) -> list[tuple[str, int]]:
    """The (query, passage index) pairs whose passage ranks within --filter-rank among its split's passages."""
    if config.filter == "none" or not candidates:
        return candidates
    kept = []
    for split in sorted({split_of[passages[i].doc_id] for _, i in candidates}):
        allowed = [n for n, p in enumerate(passages) if split_of[p.doc_id] == split]
        local = {index: n for n, index in enumerate(allowed)}
        mine = [(query, i) for query, i in candidates if split_of[passages[i].doc_id] == split]
        ranks = top_passages([passages[i].text for i in allowed], [query for query, _ in mine], config.filter_rank,
                             dense, config.hybrid_weight if config.filter == "hybrid" else None)
        kept += [(query, i) for (query, i), top in zip(mine, ranks) if local[i] in top]
    counts["llm_dropped_round_trip"] += len(candidates) - len(kept)
    order = {pair: n for n, pair in enumerate(candidates)}
    return sorted(kept, key=order.__getitem__)  # candidates' order: the output does not depend on the split loop


def top_passages(texts: list[str], queries: list[str], depth: int, dense: Embedder | None,
                 hybrid_weight: float | None = None) -> list[set[int]]:
    """Each query's top `depth` texts (indices): by BM25 and the dense model fused when `hybrid_weight` (BM25's
    weight) is given, by the dense model where given, else by BM25 (texts scoring 0, sharing no word with the
    query, are never among them)."""
    depth = min(depth, len(texts))
    if dense is None:  # a text that shares no word with the query is not found, whatever its place among the ties
        indices, scores = bm25_search(build_bm25(texts), queries, depth, len(texts))
        return [set(row[row_scores > 0].tolist()) for row, row_scores in zip(indices, scores)]
    if hybrid_weight is not None:
        return hybrid_top(texts, queries, depth, dense, hybrid_weight)
    from ragtrain.retrieval.negatives import dense_search_with_positives  # late: torch loads only for a dense filter

    indices = dense_search_with_positives(dense, texts, queries, [(0,)] * len(queries), depth).indices
    return [set(row.tolist()) for row in indices]


def hybrid_top(texts: list[str], queries: list[str], depth: int, dense: Embedder, weight: float) -> list[set[int]]:
    """Each query's top `depth` texts by fused BM25 and dense z-scores, embedded as the hybrid teacher embeds."""
    from ragtrain.retrieval.embedding import DOCUMENTS, QUERIES  # late: torch loads only for a model's round trip
    from ragtrain.retrieval.hybrid import HybridScorer

    embedded = dense.embed({"round trip: passages": (DOCUMENTS, texts), "round trip: queries": (QUERIES, queries)})
    scorer = HybridScorer(texts, embedded.parts["round trip: passages"])
    indices, _ = scorer.search(queries, embedded.parts["round trip: queries"], weight, depth)
    return [set(row.tolist()) for row in indices]
