"""Embed texts (length-sorted batches), exact top-k search in bounded memory, and an on-disk embedding cache."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ragtrain.data import pad
from ragtrain.model import Encoder
from ragtrain.runtime import autocast

QUERY_CHUNK = 1024  # queries scored at once
CORPUS_CHUNK = 16384  # documents scored at once: the score matrix is at most (1024, 16384) floats, 64 MiB
CACHE_VERSION = 1  # bump when embedding code changes what it produces


@torch.inference_mode()
def embed_texts(encoder: Encoder, tokenizer, texts: list[str], batch_size: int, max_length: int,
                device: torch.device, desc: str, precision: str = "fp32") -> torch.Tensor:
    """(len(texts), dim) float32 embeddings on the CPU, in the order of `texts`.

    Texts are encoded longest first (a too-long batch fails at once, not at the end), each batch padded to
    its own longest text, so little compute goes to padding. `precision` bf16/fp16 runs the transformer under
    autocast (matrix products in half precision, normalisation and softmax in fp32).
    """
    encoder.eval()
    token_ids = tokenizer(texts, truncation=True, max_length=max_length, padding=False)["input_ids"]
    order = sorted(range(len(texts)), key=lambda i: -len(token_ids[i]))  # stable: equal lengths keep input order
    pad_id = tokenizer.pad_token_id or 0
    out: torch.Tensor | None = None
    for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", leave=False, disable=None):
        index = order[start : start + batch_size]
        batch = {k: v.to(device) for k, v in pad([token_ids[i] for i in index], pad_id).items()}
        with autocast(device, precision != "fp32", precision):
            emb = encoder(**batch).float().cpu()  # (batch, dim)
        if out is None:
            out = torch.empty(len(texts), emb.size(1))
        out[torch.tensor(index)] = emb
    return out if out is not None else torch.empty(0, 0)


def dense_search(query_emb: torch.Tensor, corpus_emb: torch.Tensor | np.ndarray, depth: int,
                 query_chunk: int = QUERY_CHUNK, corpus_chunk: int = CORPUS_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-`depth` by dot product: (indices, scores), each (queries, min(depth, corpus)), best first.

    Equal scores rank the lower corpus index first, so results do not depend on the chunk sizes. Only one
    (query_chunk, corpus_chunk) score matrix exists at a time; `corpus_emb` may be a memory-mapped array.
    """
    num_docs = len(corpus_emb)
    depth = min(depth, num_docs)
    indices = np.zeros((len(query_emb), depth), dtype=np.int64)
    scores = np.zeros((len(query_emb), depth), dtype=np.float32)
    for q_start in range(0, len(query_emb), query_chunk):
        queries = _as_float_tensor(query_emb[q_start : q_start + query_chunk])  # (Q, dim)
        best_scores = torch.empty(len(queries), 0)
        best_index = torch.empty(len(queries), 0, dtype=torch.long)
        for c_start in range(0, num_docs, corpus_chunk):
            docs = _as_float_tensor(corpus_emb[c_start : c_start + corpus_chunk])  # (C, dim)
            chunk_scores, chunk_index = _top_in_chunk(queries @ docs.T, depth)  # (Q, <=depth) each
            best_scores, best_index = _merge(best_scores, best_index, chunk_scores, chunk_index + c_start, depth)
        indices[q_start : q_start + len(queries)] = best_index.numpy()
        scores[q_start : q_start + len(queries)] = best_scores.numpy()
    return indices, scores


def _as_float_tensor(rows: torch.Tensor | np.ndarray) -> torch.Tensor:
    """A float32 tensor; rows of a (read-only) memory-mapped array are copied, one chunk at a time."""
    return rows.float() if isinstance(rows, torch.Tensor) else torch.from_numpy(np.array(rows, dtype=np.float32))


def _top_in_chunk(scores: torch.Tensor, depth: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-`depth` of each row of (Q, C) scores; rows with ties at the cut take the lowest indices."""
    depth = min(depth, scores.size(1))
    values, index = torch.topk(scores, depth, dim=1)  # (Q, depth), ties broken arbitrarily
    tied = ((scores >= values[:, -1:]).sum(dim=1) > depth).nonzero().flatten()
    for row in tied.tolist():  # rare: an exact tie straddles the cut; a stable sort keeps index order
        order = torch.sort(scores[row], descending=True, stable=True).indices[:depth]
        values[row], index[row] = scores[row, order], order
    return values, index


def _merge(scores_a: torch.Tensor, index_a: torch.Tensor, scores_b: torch.Tensor, index_b: torch.Tensor,
           depth: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The best `depth` of two candidate lists per row, ordered by (score desc, index asc)."""
    scores, index = torch.cat([scores_a, scores_b], dim=1), torch.cat([index_a, index_b], dim=1)  # (Q, 2 depth)
    by_index = torch.argsort(index, dim=1)
    scores, index = scores.gather(1, by_index), index.gather(1, by_index)
    by_score = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :depth]
    return scores.gather(1, by_score), index.gather(1, by_score)


def dense_rankings(query_emb: torch.Tensor, corpus_emb: torch.Tensor, depth: int, **chunks: int) -> np.ndarray:
    """Top-`depth` corpus indices per query by dot product (cosine for normalised embeddings)."""
    return dense_search(query_emb, corpus_emb, depth, **chunks)[0]


# ---- cache: embeddings stored as .npy files named by a hash of everything that determines them

def default_cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "ragtrain" / "embeddings"


def model_fingerprint(model_path: str) -> dict:
    """What identifies a model's weights: every file's name, size and modification time in a local directory;
    the name (and the hub commit, when loaded from the hub cache) otherwise."""
    path = Path(model_path)
    if not path.is_dir():
        return {"name": model_path}
    files = sorted(p for p in path.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.parts[len(path.parts):]))
    return {"path": str(path.resolve()),
            "files": [[str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns] for p in files]}


def texts_fingerprint(texts: list[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        encoded = text.encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "little"))  # length prefix: ["ab", "c"] differs from ["a", "bc"]
        digest.update(encoded)
    return digest.hexdigest()


def cache_key(model: dict, texts: list[str], settings: dict) -> str:
    blob = json.dumps({"version": CACHE_VERSION, "model": model, "texts": texts_fingerprint(texts),
                       "settings": settings}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def load_cached(cache_dir: Path, key: str, rows: int) -> np.ndarray | None:
    """The cached (rows, dim) array memory-mapped, or None when absent or not the expected shape."""
    path = cache_dir / f"{key}.npy"
    try:
        emb = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return None
    return emb if emb.ndim == 2 and emb.shape[0] == rows else None


def store_cached(cache_dir: Path, key: str, emb: np.ndarray) -> None:
    """Write atomically (temporary file, then rename), so a crash never leaves half an array to be read."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=f".{key}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, np.ascontiguousarray(emb, dtype=np.float32))
        os.replace(tmp, cache_dir / f"{key}.npy")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
