"""One optimizer step: embed queries and documents -> loss -> backward, over the micro-batches of a global batch."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from ragtrain import distributed
from ragtrain.config import TrainConfig
from ragtrain.distributed import WorldInfo
from ragtrain.gradcache import grad_cache_step
from ragtrain.loss import ISOTROPY_DIRECTIONS, contrastive_loss, isotropy_generator, random_directions
from ragtrain.model import Encoder
from ragtrain.runtime import autocast


@dataclass(frozen=True)
class StepResult:
    parts: dict[str, float]  # each loss part, averaged over the micro-batches
    grad_norm: float  # before clipping
    skipped: bool  # fp16 overflow: the scaler skipped the update
    real_tokens: int  # non-padding tokens embedded


def embed(model: nn.Module, queries: dict, docs: dict, config: TrainConfig, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw (unnormalised) embeddings of queries (B, D) and documents (B + N, D), computed under autocast.

    `model` is `distributed.wrap_model(encoder)`, whose forward is the encoder's embed (DDP syncs only what
    runs through forward), or a bare Encoder in one process.
    """
    forward = model.embed if isinstance(model, Encoder) else model
    with autocast(device, config.mixed_precision, config.precision):
        return forward(**queries), forward(**docs)


def step_directions(config: TrainConfig, encoder: Encoder, step: int, device: torch.device) -> torch.Tensor | None:
    """This step's random projection directions for the isotropy term: (D, K), a function of (seed, step)."""
    if config.isotropy_weight <= 0:
        return None
    dim = config.output_dim or encoder.hidden_size
    return random_directions(dim, ISOTROPY_DIRECTIONS, isotropy_generator(config.seed, step), device)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
               micro_batches: list[tuple[dict, dict]], config: TrainConfig, device: torch.device,
               directions: torch.Tensor | None = None, world: WorldInfo = WorldInfo(),
               global_sizes: list[int] | None = None) -> StepResult:
    """Accumulate gradients over the micro-batches (each loss / count), clip, and step the optimizer.

    Each micro-batch is (queries, docs), this rank's share of a micro-batch of global_sizes[i] triples
    over all ranks (default: this rank's own count, i.e. one process). Its loss
    uses its own in-batch negatives (gathered from every rank with --gather-negatives), so the update is the
    mean of the micro-batches' gradients; it equals one big batch's only when there are no in-batch
    negatives to lose. --grad-cache gives the whole batch's negatives with a mini-batch's activations.
    """
    optimizer.zero_grad(set_to_none=True)
    totals: dict[str, float] = {}
    real_tokens = 0
    gather = config.gather_negatives and world.is_distributed
    loss_fn = partial(_loss, config=config, directions=directions, world=world if gather else WorldInfo())
    no_sync = getattr(model, "no_sync", contextlib.nullcontext)  # DDP: all-reduce once, after the last one
    for n, (queries, docs) in enumerate(micro_batches):
        queries = {k: v.to(device, non_blocking=True) for k, v in queries.items()}
        docs = {k: v.to(device, non_blocking=True) for k, v in docs.items()}
        local = queries["input_ids"].size(0)
        scale = distributed.loss_scale(world, local, global_sizes[n] if global_sizes else local, gather) / len(micro_batches)

        def backward(loss: torch.Tensor, scale: float = scale) -> None:
            scaler.scale(loss * scale).backward()  # frees this micro-batch's graph before the next

        with no_sync() if n < len(micro_batches) - 1 else contextlib.nullcontext():
            if config.grad_cache:
                amp = partial(autocast, device, config.mixed_precision, config.precision)
                parts = grad_cache_step(model, queries, docs, loss_fn, config.mini_batch_size, backward, amp)
            else:
                loss, parts = loss_fn(*embed(model, queries, docs, config, device))  # (b, D), (b + n, D)
                backward(loss)
        for name, value in parts.items():
            totals[name] = totals.get(name, 0.0) + value / len(micro_batches)
        real_tokens += int(queries["attention_mask"].sum()) + int(docs["attention_mask"].sum())
    if world.is_distributed and not gather:  # each rank saw only its own negatives: log the mean over ranks
        totals = {name: distributed.mean_over_ranks(value, world, device) for name, value in totals.items()}
    scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
    params = [p for group in optimizer.param_groups for p in group["params"]]
    max_norm = config.max_grad_norm if config.max_grad_norm > 0 else float("inf")
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    scale_before = scaler.get_scale() if scaler.is_enabled() else 1.0
    scaler.step(optimizer)  # skips the update when fp16 gradients overflowed
    scaler.update()
    skipped = scaler.is_enabled() and scaler.get_scale() < scale_before
    return StepResult(totals, grad_norm, skipped, real_tokens)


def _loss(query_emb: torch.Tensor, doc_emb: torch.Tensor, config: TrainConfig, directions: torch.Tensor | None,
          world: WorldInfo) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of this rank's embeddings, over the whole micro-batch of all ranks when `world` has several."""
    query_emb, doc_emb = distributed.gather_embeddings(query_emb, doc_emb, world)  # (B, D), (B + N, D)
    return contrastive_loss(query_emb, doc_emb, config.temperature, config.normalize, config.symmetric,
                            config.isotropy_weight, directions)
