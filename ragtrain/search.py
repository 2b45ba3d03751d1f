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
CACHE_VERSION = 2  # bump when embedding code changes what it produces (2: entries carry a checksum sidecar)


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


# ---- cache: embeddings stored as .npy files named by a hash of everything that determines them, each with a
# sidecar .json (shape, dtype, sha256 of the .npy bytes) that is checked before an entry is trusted

def default_cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "ragtrain" / "embeddings"


def model_fingerprint(model_path: str) -> dict | None:
    """What identifies a model's weights, or None when nothing reliable does (then nothing is cached).

    A local directory: each file's name, resolved real path, size and modification time. A Hugging Face
    name: the commit of the hub-cache snapshot it loads from, and that snapshot's files (links to blobs
    named by their content hash, so their real paths follow the content), never the name alone."""
    path = Path(model_path)
    if path.is_dir():
        return {"path": str(path.resolve()), "files": _files_fingerprint(path)}
    snapshot = hub_snapshot(model_path)
    if snapshot is None:
        return None
    return {"name": model_path, "revision": snapshot.name, "files": _files_fingerprint(snapshot)}


def _files_fingerprint(directory: Path) -> list[list]:
    files = sorted(p for p in directory.rglob("*")
                   if p.is_file() and not any(part.startswith(".") for part in p.parts[len(directory.parts):]))
    return [[str(p.relative_to(directory)), os.path.realpath(p), p.stat().st_size, p.stat().st_mtime_ns] for p in files]


def hub_snapshot(name: str) -> Path | None:
    """The hub-cache folder (snapshots/<commit>) that transformers loads `name` from, or None."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(name, "config.json")
    except (ImportError, ValueError):  # no huggingface_hub, or not a valid repository id
        return None
    return Path(found).parent if isinstance(found, str) else None


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


def load_cached(cache_dir: Path, key: str, rows: int, dim: int) -> tuple[np.ndarray | None, str]:
    """(the cached (rows, dim) float32 array, memory-mapped, "hit") when every check passes, else (None, why):
    "absent", or what failed (unreadable, shape or dtype, checksum, non-finite values); the caller recomputes."""
    array_path = cache_dir / f"{key}.npy"
    if not array_path.is_file():
        return None, "absent"
    try:
        sidecar = json.loads((cache_dir / f"{key}.json").read_text(encoding="utf-8"))
        emb = np.load(array_path, mmap_mode="r")
    except (OSError, ValueError):
        return None, "unreadable"
    if not isinstance(sidecar, dict) or emb.dtype != np.float32 or emb.shape != (rows, dim) \
            or sidecar.get("shape") != [rows, dim] or sidecar.get("dtype") != "float32":
        return None, "shape or dtype"
    try:
        if sidecar.get("sha256") != file_sha256(array_path):
            return None, "checksum"
    except OSError:
        return None, "unreadable"
    if not all(np.isfinite(emb[start : start + 65536]).all() for start in range(0, rows, 65536)):
        return None, "non-finite values"
    return emb, "hit"


def file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def store_cached(cache_dir: Path, key: str, emb: np.ndarray) -> None:
    """The array, then its sidecar, each to a temporary name and renamed: a crash between the two leaves no
    sidecar or an old one whose checksum fails, so a half-written entry is never trusted. An OSError (disk
    full, read-only) reaches the caller, which warns and goes on without the cache."""
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    cache_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write(cache_dir / f"{key}.npy", lambda handle: np.save(handle, emb))
    sidecar = {"shape": list(emb.shape), "dtype": "float32", "sha256": file_sha256(cache_dir / f"{key}.npy")}
    _atomic_write(cache_dir / f"{key}.json", lambda handle: handle.write(json.dumps(sidecar).encode()))


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
