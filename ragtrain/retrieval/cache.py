"""The on-disk cache of embeddings: an entry is a .npy file named by a hash of everything that determines it (the
model's files or hub revision, the texts, the settings, the precision encoded in), with a sidecar .json (shape,
dtype, sha256 of the .npy bytes) that is checked before the entry is trusted. A cache that fails verification is
encoded again; one that cannot be written gives one warning and the run goes on without it.

An entry is written in place as it is encoded (a memory-mapped .npy under a temporary name, its space reserved
first, renamed once complete) and read memory-mapped, so neither side holds a corpus's embeddings in memory. It
holds float16 when the encoding ran in bf16 or fp16 (half the disk and memory; a model computing in half precision
is no more exact than float16 keeps), float32 otherwise; the precision is in the key, so entries never mix.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ragtrain.files.atomic import atomic_path, atomic_write_with, file_sha256
from ragtrain.files.diskerrors import DISK_ERRORS, WriteError
from ragtrain.files.names import CARD, EVALUATIONS
from ragtrain.messages import warn
from ragtrain.model.modelfiles import hub_snapshot
from ragtrain.model.world import WorldInfo, gather_objects, gather_rows

CACHE_VERSION = 3  # bump when embedding code changes what it produces (2: a checksum sidecar; 3: float16 entries)
KEY_HEX_DIGITS = 32  # 128 bits of the sha256: no collision in reach, and short file names
LENGTH_BYTES = 8  # each text's length, hashed before it: ["ab", "c"] and ["a", "bc"] differ
FINITE_CHECK_ROWS = 65536  # rows checked for NaN or inf at a time: a memory-mapped entry is never read whole


@dataclass
class EmbeddingCache:
    """Where embeddings are cached (None: off), and whether writing still works in this run."""

    directory: Path | None
    writable: bool = True  # a failed write (disk full, read-only) turns writing off, with one warning


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
    """Every file that shapes the embeddings; not the model card and its evaluations, which `evaluate
    --update-card` rewrites (that must not make the next evaluation encode the corpus again)."""
    files = sorted(p for p in directory.rglob("*")
                   if p.is_file() and not any(part.startswith(".") for part in p.parts[len(directory.parts):])
                   and p.relative_to(directory).as_posix() not in (CARD, EVALUATIONS))
    return [[str(p.relative_to(directory)), os.path.realpath(p), p.stat().st_size, p.stat().st_mtime_ns] for p in files]


def texts_fingerprint(texts: list[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        encoded = text.encode("utf-8")
        digest.update(len(encoded).to_bytes(LENGTH_BYTES, "little"))
        digest.update(encoded)
    return digest.hexdigest()


def cache_key(model: dict, texts: list[str], settings: dict) -> str:
    blob = json.dumps({"version": CACHE_VERSION, "model": model, "texts": texts_fingerprint(texts),
                       "settings": settings}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:KEY_HEX_DIGITS]


def stored_dtype(precision: str) -> np.dtype:
    """What embeddings encoded in `precision` are kept as: float16 for bf16 and fp16, float32 for fp32."""
    return np.dtype(np.float16 if precision in ("bf16", "fp16") else np.float32)


def load_cached(cache_dir: Path, key: str, rows: int, dim: int,
                dtype: np.dtype = np.dtype(np.float32)) -> tuple[np.ndarray | None, str]:
    """(the cached (rows, dim) array of `dtype`, memory-mapped, "hit") when every check passes, else (None, why):
    "absent", or what failed (unreadable, shape or dtype, checksum, non-finite values); the caller recomputes."""
    array_path = cache_dir / f"{key}.npy"
    if not array_path.is_file():
        return None, "absent"
    try:
        sidecar = json.loads((cache_dir / f"{key}.json").read_text(encoding="utf-8"))
        emb = np.load(array_path, mmap_mode="r")
    except (OSError, ValueError):
        return None, "unreadable"
    if not isinstance(sidecar, dict) or emb.dtype != dtype or emb.shape != (rows, dim) \
            or sidecar.get("shape") != [rows, dim] or sidecar.get("dtype") != dtype.name:
        return None, "shape or dtype"
    try:
        if sidecar.get("sha256") != file_sha256(array_path):
            return None, "checksum"
    except OSError:
        return None, "unreadable"
    if not all(np.isfinite(emb[start : start + FINITE_CHECK_ROWS]).all() for start in range(0, rows, FINITE_CHECK_ROWS)):
        return None, "non-finite values"
    return emb, "hit"


@contextlib.contextmanager
def new_entry(cache_dir: Path, key: str, rows: int, dim: int, dtype: np.dtype) -> Iterator[np.ndarray]:
    """A (rows, dim) memory-mapped array to fill, the cache entry `key` once the block ends: the array under a
    temporary name (its disk space reserved at once, so a full disk fails here rather than as a crash mid-way),
    then its sidecar, each renamed into place; a crash leaves no entry or one whose checksum fails, never trusted.
    A disk that is full or read-only (WriteError, or another OSError) reaches the caller."""
    path = cache_dir / f"{key}.npy"
    with atomic_path(path) as tmp:
        emb = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(rows, dim))
        if hasattr(os, "posix_fallocate"):  # a page written to a full disk's map would kill the process (SIGBUS)
            with open(tmp, "r+b") as handle:
                os.posix_fallocate(handle.fileno(), 0, os.path.getsize(tmp))
        yield emb
        emb.flush()
        del emb
    sidecar = {"shape": [rows, dim], "dtype": dtype.name, "sha256": file_sha256(path)}
    atomic_write_with(cache_dir / f"{key}.json", lambda handle: handle.write(json.dumps(sidecar).encode()))


def store_cached(cache_dir: Path, key: str, emb: np.ndarray) -> None:
    """A whole array as the entry `key` (see new_entry)."""
    with new_entry(cache_dir, key, len(emb), emb.shape[1], emb.dtype) as out:
        out[:] = emb


EncodeRows = Callable[[int, int, np.ndarray], None]  # encode rows [start, end) of a part into the (end - start, dim) array


def cached_or_encoded(part: str, rows: int, encode: EncodeRows, key: str | None, cache: EmbeddingCache, dim: int,
                      dtype: np.dtype, world: WorldInfo = WorldInfo()) -> tuple[np.ndarray, str]:
    """A part's (rows, dim) embeddings: verified cached ones ("hit", on every rank), else freshly encoded ones,
    written into a new entry as they are made ("miss"; "off" without a cache). Under torchrun each rank encodes its
    slice and every rank gets every row; rank 0 alone writes the entry."""
    if cache.directory is None or key is None:
        return encoded(rows, dim, dtype, encode, world), "off"
    emb, status = load_cached(cache.directory, key, rows, dim, dtype)
    if all(s == "hit" for s in gather_objects(status, world)):  # a rank that misses makes every rank encode
        return emb, "hit"
    if status not in ("absent", "hit"):
        warn(f"cached {part} embeddings in {cache.directory} failed verification ({status}); encoding them again")
    del emb
    if not (cache.writable and world.is_main):
        return encoded(rows, dim, dtype, encode, world), "miss"
    started = False
    try:
        with new_entry(cache.directory, key, rows, dim, dtype) as out:
            started = True  # from here an error is the encoding's (or the final rename's), not a cache it cannot open
            encoded(rows, dim, dtype, encode, world, out)
    except (OSError, WriteError) as exc:
        if started:
            raise
        cache_failed(cache, exc)
        return encoded(rows, dim, dtype, encode, world), "miss"
    return np.load(cache.directory / f"{key}.npy", mmap_mode="r"), "miss"


def encoded(rows: int, dim: int, dtype: np.dtype, encode: EncodeRows, world: WorldInfo,
            out: np.ndarray | None = None) -> np.ndarray:
    """`out` (a new array when None) filled: by this process alone, or each rank encoding its slice, gathered."""
    out = np.empty((rows, dim), dtype=dtype) if out is None else out
    if not world.is_distributed:
        encode(0, rows, out)
        return out
    start, end = world.slice(rows)
    local = np.empty((end - start, dim), dtype=dtype)
    encode(start, end, local)
    gather_rows(local, out, world)
    return out


def cache_failed(cache: EmbeddingCache, exc: BaseException) -> None:
    """Writing the cache stops for the rest of the run, with one warning saying why."""
    cache.writable = False
    reason = DISK_ERRORS.get(getattr(exc, "errno", None)) or getattr(exc, "strerror", None) or exc
    warn(f"embedding cache {cache.directory} cannot be written ({reason}); going on without it")
