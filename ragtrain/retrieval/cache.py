"""The on-disk cache of embeddings: an entry is a .npy file named by a hash of everything that determines it (the
model's files or hub revision, the texts, the settings), with a sidecar .json (shape, dtype, sha256 of the .npy
bytes) that is checked before the entry is trusted. A cache that fails verification is encoded again; one that
cannot be written gives one warning and the run goes on without it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ragtrain.files.atomic import atomic_write_with, file_sha256
from ragtrain.files.diskerrors import DISK_ERRORS, WriteError
from ragtrain.files.names import CARD, EVALUATIONS
from ragtrain.messages import warn
from ragtrain.model.modelfiles import hub_snapshot

CACHE_VERSION = 2  # bump when embedding code changes what it produces (2: entries carry a checksum sidecar)
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
    if not all(np.isfinite(emb[start : start + FINITE_CHECK_ROWS]).all() for start in range(0, rows, FINITE_CHECK_ROWS)):
        return None, "non-finite values"
    return emb, "hit"


def store_cached(cache_dir: Path, key: str, emb: np.ndarray) -> None:
    """The array, then its sidecar, each to a temporary name and renamed: a crash between the two leaves no
    sidecar or an old one whose checksum fails, so a half-written entry is never trusted. A disk that is full or
    read-only (WriteError, or another OSError) reaches the caller, which warns and goes on without the cache."""
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    cache_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_with(cache_dir / f"{key}.npy", lambda handle: np.save(handle, emb))
    sidecar = {"shape": list(emb.shape), "dtype": "float32", "sha256": file_sha256(cache_dir / f"{key}.npy")}
    atomic_write_with(cache_dir / f"{key}.json", lambda handle: handle.write(json.dumps(sidecar).encode()))


def cached_or_encoded(part: str, texts: list[str], encode: Callable[[str, list[str]], np.ndarray], key: str | None,
                      cache: EmbeddingCache, dim: int) -> tuple[np.ndarray, str]:
    """Verified cached embeddings ("hit"), else freshly encoded ones, stored for next time ("miss"; "off")."""
    if cache.directory is None or key is None:
        return encode(part, texts), "off"
    emb, status = load_cached(cache.directory, key, len(texts), dim)
    if emb is not None:
        return emb, "hit"
    if status != "absent":
        warn(f"cached {part} embeddings in {cache.directory} failed verification ({status}); encoding them again")
    emb = encode(part, texts)
    if cache.writable:
        try:
            store_cached(cache.directory, key, emb)
        except (OSError, WriteError) as exc:
            cache.writable = False
            reason = DISK_ERRORS.get(getattr(exc, "errno", None)) or getattr(exc, "strerror", None) or exc
            warn(f"embedding cache {cache.directory} cannot be written ({reason}); going on without it")
    return emb, "miss"
