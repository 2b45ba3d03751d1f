"""Checks on what a model name or directory holds, so that a bad one is one clear line, not a traceback or a
model silently evaluated without its vocabulary."""

from __future__ import annotations

import json
from pathlib import Path

from ragtrain.errors import UserError

HEAD_SUFFIXES = ("ForSequenceClassification", "ForTextClassification")  # architectures that end in a scoring head


def looks_like_path(name: str) -> bool:
    """./x, ../x, /x, ~/x, or a/b where `a` exists here: a path the user meant, not a Hugging Face id."""
    if name.startswith(("./", "../", "/", "~", ".\\", "..\\")) or name in (".", ".."):
        return True
    first = Path(name).parts[0] if Path(name).parts else ""
    return len(Path(name).parts) > 1 and Path(first).exists()  # a hub id has one '/', but its owner is no local folder


def check_tokenizer_files(path: str, tokenizer) -> None:
    """A local model directory must hold its tokenizer: without one, transformers 5 builds the architecture's
    tokenizer with an empty vocabulary (BERT: the 5 special tokens), so every word becomes [UNK] and the
    model is evaluated on nothing, silently."""
    directory = Path(path)
    if not directory.is_dir():
        return
    names = {"tokenizer.json", *getattr(tokenizer, "vocab_files_names", {}).values()}
    if not any((directory / name).is_file() for name in names):
        raise UserError(f"model directory {path} has no tokenizer files ({', '.join(sorted(names))}); save the "
                        "tokenizer of its base model there (tokenizer.save_pretrained) or pass a complete model")


def unreadable_weights(path: str) -> str:
    """The first weights file of `path` that safetensors cannot open, for the error message."""
    from safetensors import SafetensorError, safe_open

    for file in sorted(Path(path).glob("*.safetensors")) if Path(path).is_dir() else []:
        try:
            with safe_open(str(file), "pt"):
                pass
        except (SafetensorError, OSError):
            return str(file)
    return path


def first_line(exc: BaseException, limit: int = 120) -> str:
    """An exception's first line, cut to `limit` characters, for a one-line message."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


def hub_snapshot(name: str) -> Path | None:
    """The hub-cache folder (snapshots/<commit>) that transformers loads `name` from, or None."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(name, "config.json")
    except (ImportError, ValueError):  # no huggingface_hub, or not a valid repository id
        return None
    return Path(found).parent if isinstance(found, str) else None


def model_files(name_or_path: str) -> Path | None:
    """Where a model's own files are without loading anything: its directory, or for a hub name its hub-cache
    snapshot (None: neither)."""
    path = Path(name_or_path).expanduser()
    return path if path.is_dir() else hub_snapshot(name_or_path)


def require_classification_head(name: str, files: Path | None) -> None:
    """A model whose config.json names no sequence-classification architecture is no cross-encoder: loaded as one,
    transformers would give it a fresh random scoring head and every teacher score would be noise. `files`: its
    directory (None: a hub name not in the cache, where transformers says what it finds)."""
    if files is None or not (files / "config.json").is_file():
        return
    try:
        architectures = json.loads((files / "config.json").read_text(encoding="utf-8")).get("architectures") or []
    except (OSError, ValueError, AttributeError):
        architectures = []
    if not any(str(a).endswith(HEAD_SUFFIXES) for a in architectures):
        kind = ", ".join(map(str, architectures)) or "no architecture"
        raise UserError(f"--teacher {name} is not a cross-encoder: its config.json names {kind}, not a "
                        "sequence-classification model (an embedding model would get a random scoring head); pass "
                        "'hybrid', or a cross-encoder such as cross-encoder/ms-marco-MiniLM-L6-v2")
