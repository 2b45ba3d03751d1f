"""Checks on what a model name or directory holds, so that a bad one is one clear line, not a traceback or a
model silently evaluated without its vocabulary."""

from __future__ import annotations

from pathlib import Path

from ragtrain.errors import UserError


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
