"""One optimizer step: embed queries and documents -> loss -> backward, over the micro-batches of a global batch."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ragtrain.config import TrainConfig
from ragtrain.loss import ISOTROPY_DIRECTIONS, contrastive_loss, isotropy_generator, random_directions
from ragtrain.model import Encoder
from ragtrain.runtime import autocast


@dataclass(frozen=True)
class StepResult:
    parts: dict[str, float]  # each loss part, averaged over the micro-batches
    grad_norm: float  # before clipping
    skipped: bool  # fp16 overflow: the scaler skipped the update
    real_tokens: int  # non-padding tokens embedded


def embed(encoder: Encoder, queries: dict, docs: dict, config: TrainConfig, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw (unnormalised) embeddings of queries (B, D) and documents (B + N, D), in the autocast dtype."""
    with autocast(device, config.mixed_precision, config.precision):
        return encoder.embed(**queries), encoder.embed(**docs)


def step_directions(config: TrainConfig, encoder: Encoder, step: int, device: torch.device) -> torch.Tensor | None:
    """This step's random projection directions for the isotropy term: (D, K), a function of (seed, step)."""
    if config.isotropy_weight <= 0:
        return None
    dim = config.output_dim or encoder.hidden_size
    return random_directions(dim, ISOTROPY_DIRECTIONS, isotropy_generator(config.seed, step), device)


def train_step(encoder: Encoder, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
               micro_batches: list[tuple[dict, dict]], config: TrainConfig, device: torch.device,
               directions: torch.Tensor | None = None) -> StepResult:
    """Accumulate gradients over the micro-batches (each loss / count), clip, and step the optimizer.

    Each micro-batch's loss uses its own in-batch negatives, so the update is the mean of the
    micro-batches' gradients; it equals one big batch's only when there are no in-batch negatives to lose.
    """
    optimizer.zero_grad(set_to_none=True)
    totals: dict[str, float] = {}
    real_tokens = 0
    for queries, docs in micro_batches:
        queries = {k: v.to(device, non_blocking=True) for k, v in queries.items()}
        docs = {k: v.to(device, non_blocking=True) for k, v in docs.items()}
        query_emb, doc_emb = embed(encoder, queries, docs, config, device)  # (b, D), (b + n, D)
        loss, parts = contrastive_loss(query_emb, doc_emb, config.temperature, config.normalize, config.symmetric,
                                       config.isotropy_weight, directions)
        scaler.scale(loss / len(micro_batches)).backward()  # frees this micro-batch's graph before the next
        for name, value in parts.items():
            totals[name] = totals.get(name, 0.0) + value / len(micro_batches)
        real_tokens += int(queries["attention_mask"].sum()) + int(docs["attention_mask"].sum())
    scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
    params = [p for group in optimizer.param_groups for p in group["params"]]
    max_norm = config.max_grad_norm if config.max_grad_norm > 0 else float("inf")
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    scale_before = scaler.get_scale() if scaler.is_enabled() else 1.0
    scaler.step(optimizer)  # skips the update when fp16 gradients overflowed
    scaler.update()
    skipped = scaler.is_enabled() and scaler.get_scale() < scale_before
    return StepResult(totals, grad_norm, skipped, real_tokens)
