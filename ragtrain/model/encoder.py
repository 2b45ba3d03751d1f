"""Encoder = a Hugging Face transformer + pooling + optional Dense head + optional L2 normalisation, holding its
tokenizer and its TextSettings (settings.py): the one place that says how this model turns text into a vector.

A saved model is one directory that loads three ways with the same embeddings: loading.load_encoder, transformers'
AutoModel/AutoTokenizer (the transformer alone), and sentence-transformers' SentenceTransformer (saving.py).
"""

from __future__ import annotations

from collections import Counter

import torch
import torch.nn.functional as F
from torch import nn

from ragtrain.errors import UserError
from ragtrain.model.settings import TextSettings

# Padding tokens one more transformer pass is worth, by device type (CPU, bench_train's triples: 16 and 64 alike).
PASS_COST_TOKENS = {"cpu": 32}


class Encoder(nn.Module):
    """The network (transformer, pooling, head, normalisation), its tokenizer, and its text settings."""

    def __init__(self, transformer: nn.Module, settings: TextSettings, tokenizer=None, projection: nn.Module | None = None):
        super().__init__()
        self.transformer = transformer
        self.settings = settings
        self.tokenizer = tokenizer
        self.projection = projection
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

    @property
    def output_dim(self) -> int | None:
        """The head's output size, or None without a head."""
        return self.projection.out_features if self.projection is not None else None

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id or 0

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
        return pool(hidden, attention_mask, self.settings.pooling)  # (B, H)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        emb = self.embed(input_ids, attention_mask)
        return F.normalize(emb, dim=-1) if self.settings.normalize else emb


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


