"""A model's embeddings of the texts a search needs (a corpus, its queries), through the model's one encode pair
(model.encoding) and the embedding cache (cache.py): an unchanged model, text list and settings encode once.
evaluate's dense and hybrid rows, the dense miner, the hybrid teacher and the round-trip filter embed here."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ragtrain.messages import warn
from ragtrain.model.encoder import Encoder
from ragtrain.model.encoding import ENCODE_BATCH_SIZE, encode_documents, encode_queries
from ragtrain.model.runtime import Runtime
from ragtrain.model.world import current_world
from ragtrain.retrieval.cache import EmbeddingCache, cache_key, cached_or_encoded, model_fingerprint, stored_dtype

QUERIES, DOCUMENTS = "queries", "documents"  # which side of the model's encode pair a part goes through
REUSE_ROWS = 200_000  # parts up to this many rows reuse what the run embedded before (at 384 dims, 300 MB)


@dataclass
class Embedded:
    """Each part's (rows, dim) embeddings (normalised where the model scores by cosine; float16 when encoded in half
    precision, else float32; memory-mapped when cached), and how they came."""

    parts: dict[str, np.ndarray] = field(default_factory=dict)
    cache: str = "off"  # hit, miss, partial (some of each) or off
    seconds: dict[str, float] = field(default_factory=dict)  # per part


@dataclass(frozen=True)
class Embedder:
    """A loaded model, where it computes and where its embeddings are cached: what embeds for a search. A command
    loads it once (prepare-data's dense miner, round-trip filter and hybrid teacher share one)."""

    encoder: Encoder
    model_dir: str  # a directory or a hub name: identifies the weights for the cache
    runtime: Runtime
    cache: EmbeddingCache
    batch_size: int = ENCODE_BATCH_SIZE
    # (side, text) -> (embeddings, row) of what this run embedded: a later part reuses them (the hybrid teacher's
    # corpus after the miner's); only parts of at most REUSE_ROWS rows, whose reassembly stays small in memory
    seen: dict = field(default_factory=dict, compare=False, repr=False)

    def embed(self, parts: dict[str, tuple[str, list[str]]]) -> Embedded:
        """Embed each named part, `{name: (QUERIES or DOCUMENTS, texts)}`, or fetch it from the cache; texts this
        Embedder embedded before on the same side are not encoded again."""
        unseen = {name: (side, self._unseen(side, texts)) for name, (side, texts) in parts.items()}
        todo = {name: part for name, part in unseen.items() if part[1] or part[1] is parts[name][1]}  # all but reused
        result = embed_parts(self.encoder, self.model_dir, todo, self.runtime, self.cache, self.batch_size) if todo \
            else Embedded()
        for name, (side, texts) in parts.items():
            new = unseen[name][1]
            if len(texts) <= REUSE_ROWS:
                self.seen.update({(side, text): (result.parts[name], row) for row, text in enumerate(new)})
            if new is not texts:  # some or all of it embedded before: gathered row by row
                result.parts[name] = self._assembled(side, texts)
            result.seconds.setdefault(name, 0.0)
        return result

    def _unseen(self, side: str, texts: list[str]) -> list[str]:
        """`texts` itself when none was embedded before (or the part is too large to reassemble), so the cache
        keys the whole list; else the texts not yet embedded, each once."""
        if len(texts) > REUSE_ROWS or not any((side, text) in self.seen for text in texts):
            return texts
        return [text for text in dict.fromkeys(texts) if (side, text) not in self.seen]

    def _assembled(self, side: str, texts: list[str]) -> np.ndarray:
        """(rows, dim): each text's embedding from where this run made it."""
        return np.stack([np.asarray(self.seen[(side, text)][0][self.seen[(side, text)][1]]) for text in texts])


def embed_parts(encoder: Encoder, model_dir: str, parts: dict[str, tuple[str, list[str]]], runtime: Runtime,
                cache: EmbeddingCache, batch_size: int) -> Embedded:
    """Embed each named part, `{name: (QUERIES or DOCUMENTS, texts)}`, or fetch it from the cache. `model_dir`
    (a directory or a hub name) identifies the weights for the cache; a model whose revision cannot be known is
    not cached (with one warning). Under torchrun every rank calls this with the same parts: each encodes its slice
    of every part and gets all of them (cache.cached_or_encoded)."""
    world = current_world()
    fingerprint = model_fingerprint(model_dir) if cache.directory is not None else None
    if cache.directory is not None and fingerprint is None:
        warn(f"{model_dir}: neither a local directory nor in the Hugging Face cache, so its revision is unknown and "
             "its embeddings are not cached")
    settings = cache_settings(encoder, runtime)
    encoders = {QUERIES: encode_queries, DOCUMENTS: encode_documents}
    result, statuses = Embedded(), []
    for name, (side, texts) in parts.items():
        started = time.perf_counter()
        key = cache_key(fingerprint, texts, settings) if fingerprint is not None else None

        def encode(start: int, end: int, out: np.ndarray, side: str = side, texts: list[str] = texts,
                   name: str = name) -> None:
            encoders[side](encoder, texts[start:end], runtime, batch_size, name, out=out)

        result.parts[name], status = cached_or_encoded(name, len(texts), encode, key, cache, encoder.output_size,
                                                       stored_dtype(runtime.encode_precision), world)
        statuses.append(status)
        result.seconds[name] = time.perf_counter() - started
    result.cache = "off" if "off" in statuses else statuses[0] if len(set(statuses)) == 1 else "partial"
    return result


def cache_settings(encoder: Encoder, runtime: Runtime) -> dict:
    """Everything beyond the weights and the texts that decides the embeddings: the model's text settings, its
    head, and the precision and dtype the runtime encodes in."""
    settings = encoder.settings
    return {"max_length": settings.max_length, "pooling": settings.pooling, "normalize": settings.normalize,
            "output_dim": encoder.output_dim, "similarity": settings.similarity, "precision": runtime.encode_precision,
            "query_prompt": settings.query_prompt, "document_prompt": settings.document_prompt,
            "lower_case": settings.lower_case, "dtype": runtime.weights}
