"""One optimizer step: embed queries and documents -> loss -> backward, over the micro-batches of a global batch."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from ragtrain.config.train import TrainConfig
from ragtrain.data.triples import TokenizedTriples, collate, distill_targets, false_negative_mask, micro_batches
from ragtrain.model.encoder import Encoder
from ragtrain.model.runtime import Runtime
from ragtrain.model.settings import TextSettings
from ragtrain.model.world import WorldInfo
from ragtrain.training import distributed
from ragtrain.training.diagnostics import DIAGNOSTICS, embedding_diagnostics
from ragtrain.training.gradcache import grad_cache_step
from ragtrain.training.loss import (
    ISOTROPY_DIRECTIONS,
    LossOptions,
    contrastive_loss,
    distill_loss,
    isotropy_generator,
    random_directions,
)


@dataclass(frozen=True)
class MicroBatch:
    """One micro-batch as this rank sees it: its own slice to embed, and the mask of the loss's layout."""

    queries: dict  # this rank's queries (b, Lq); when its slice is empty (b = 0), one stand-in row
    docs: dict  # their positives, then their hard negatives (b + n, Ld); one stand-in row when b = 0
    rows: int  # b, this rank's triples; 0: the stand-in is embedded only so that DDP's all-reduce runs
    global_size: int  # B, the micro-batch's triples over all ranks
    mask: torch.Tensor  # (B, B + N) bool over the layout the loss scores (gathered, or this rank's own)
    masked: int  # candidates masked out of a query's softmax, over all ranks
    # --loss distill: (candidates, valid, teacher), each (B, 1 + N) over the same layout as `mask`; else None
    distill: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None


@dataclass(frozen=True)
class StepResult:
    parts: dict[str, float]  # each loss part and each diagnostic (diagnostics.py), averaged over the micro-batches
    grad_norm: float  # before clipping
    skipped: bool  # the loss or the gradient was not finite (fp16 overflow included): no update
    real_tokens: int  # non-padding tokens embedded
    triples: int  # triples in the global batch
    masked: int  # candidates masked out as false negatives, over the micro-batches


def step_batches(data: TokenizedTriples, batch: list[int], config: TrainConfig, world: WorldInfo,
                 pad_id: int) -> list[MicroBatch]:
    """A global batch of triple indices -> this rank's micro-batches (--grad-accum-steps of them).

    Each rank takes a contiguous slice of each micro-batch. With gathered negatives the loss scores the
    whole micro-batch, laid out as [all positives, all negatives] like one process's collate, so the mask is
    the whole micro-batch's; without gathering each rank scores its own slice, with its own mask. A rank
    whose slice is empty (a micro-batch smaller than the number of ranks) embeds the first triple as a
    stand-in and scores none of it: its gradient is zero, yet it joins every collective.
    """
    gather = config.gather_negatives and world.is_distributed
    result = []
    for part in micro_batches(batch, config.grad_accum_steps):
        shard = distributed.shard_batch(part, world)
        queries, docs = collate(data, shard or part[:1], pad_id)
        mask = false_negative_mask(data, part if gather else shard)
        masked = int(mask.sum()) if gather or not world.is_distributed else sum(  # every rank's own count
            int(false_negative_mask(data, distributed.shard_batch(part, WorldInfo(r, world.size))).sum())
            for r in range(world.size))
        scored = part if gather else shard
        targets = distill_targets(data, scored) if config.loss == "distill" and scored else None
        result.append(MicroBatch(queries, docs, len(shard), len(part), mask, masked, targets))
    return result


def embed(model: nn.Module, queries: dict, docs: dict, runtime: Runtime) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw (unnormalised) embeddings of queries (B, D) and documents (B + N, D), computed under autocast.

    `model` is `distributed.wrap_model(encoder)`, whose forward is the encoder's embed (DDP syncs only what
    runs through forward), or a bare Encoder in one process.
    """
    forward = model.embed if isinstance(model, Encoder) else model
    with runtime.train_autocast():
        return forward(**queries), forward(**docs)


def step_directions(config: TrainConfig, encoder: Encoder, step: int, device: torch.device) -> torch.Tensor | None:
    """This step's random projection directions for the isotropy term: (D, K), a function of (seed, step)."""
    if config.isotropy_weight <= 0:
        return None
    return random_directions(encoder.output_size, ISOTROPY_DIRECTIONS, isotropy_generator(config.seed, step), device)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
               batches: list[MicroBatch], config: TrainConfig, runtime: Runtime, loss: LossOptions,
               directions: torch.Tensor | None = None, world: WorldInfo = WorldInfo()) -> StepResult:
    """Accumulate gradients over the micro-batches (each loss / count), clip, and step the optimizer.

    Each micro-batch's loss uses its own in-batch negatives (gathered from every rank with
    --gather-negatives), so the update is the mean of the micro-batches' gradients; it equals one big
    batch's only when there are no in-batch negatives to lose. --grad-cache gives the whole batch's
    negatives with a mini-batch's activations. A step whose loss or gradient is not finite is skipped: no
    update (an fp16 scaler lowers its scale, as after any overflow). The decision rests on the global loss
    and the all-reduced gradient, so every rank takes the same one.
    """
    optimizer.zero_grad(set_to_none=True)
    totals: dict[str, float] = {}
    no_sync = getattr(model, "no_sync", contextlib.nullcontext)  # DDP: all-reduce once, after the last one
    for n, batch in enumerate(batches):
        with no_sync() if n < len(batches) - 1 else contextlib.nullcontext():
            parts = _micro_step(model, scaler, batch, config, runtime, loss, directions, world, len(batches))
        for name, value in parts.items():
            totals[name] = totals.get(name, 0.0) + value / len(batches)
    if world.is_distributed and not config.gather_negatives:  # each rank's share-weighted part, summed
        totals = {name: distributed.mean_over_ranks(value, world, runtime.device) for name, value in totals.items()}
    scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
    params = [p for group in optimizer.param_groups for p in group["params"]]
    max_norm = config.max_grad_norm if config.max_grad_norm > 0 else float("inf")
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    skipped = not (math.isfinite(totals["loss"]) and math.isfinite(grad_norm))
    if not skipped:
        scaler.step(optimizer)
    scaler.update()  # fp16: a skipped step lowers the scale, like the scaler's own overflow check
    real_tokens = sum(int(b.queries["attention_mask"].sum()) + int(b.docs["attention_mask"].sum()) for b in batches if b.rows)
    return StepResult(totals, grad_norm, skipped, real_tokens, sum(b.global_size for b in batches),
                      sum(b.masked for b in batches))


def _micro_step(model: nn.Module, scaler: torch.amp.GradScaler, batch: MicroBatch, config: TrainConfig,
                runtime: Runtime, loss: LossOptions, directions: torch.Tensor | None, world: WorldInfo,
                count: int) -> dict[str, float]:
    """Backward of one micro-batch's loss (scaled for DDP's average and the accumulation); its loss parts.

    Without gathering, each rank's parts are weighted by its share of the micro-batch (times the number of
    ranks), so their mean over ranks is the mean over all queries.
    """
    queries = {k: v.to(runtime.device, non_blocking=True) for k, v in batch.queries.items()}
    docs = {k: v.to(runtime.device, non_blocking=True) for k, v in batch.docs.items()}
    gather = config.gather_negatives and world.is_distributed
    targets = tuple(t.to(runtime.device) for t in batch.distill) if batch.distill is not None else None
    loss_fn = partial(_loss, mask=batch.mask.to(runtime.device), loss=loss, directions=directions,
                      world=world if gather else WorldInfo(), distill=targets)
    scale = distributed.loss_scale(world, batch.rows, batch.global_size, gather)

    def backward(total: torch.Tensor) -> None:
        scaler.scale(total * scale / count).backward()  # frees this micro-batch's graph before the next

    if config.grad_cache and batch.rows:
        parts = grad_cache_step(model, queries, docs, loss_fn, config.mini_batch_size, backward, runtime.train_autocast)
    else:
        query_emb, doc_emb = embed(model, queries, docs, runtime)  # (b, D), (b + n, D)
        kept = slice(None) if batch.rows else slice(0, 0)  # a stand-in's rows are embedded, never scored
        total, parts = loss_fn(query_emb[kept], doc_emb[kept])
        backward(total)
    weight = 1.0 if gather or not world.is_distributed else scale
    return {name: value * weight for name, value in parts.items()}


def loss_options(config: TrainConfig, settings: TextSettings) -> LossOptions:
    """The run's loss: its options, with the normalisation and Matryoshka dimensions of the model it trains."""
    return LossOptions(config.loss, config.temperature, settings.normalize, config.symmetric, config.isotropy_weight,
                       settings.matryoshka_dims, config.distill_objective, config.teacher_temperature,
                       config.distill_infonce_weight)


def _loss(query_emb: torch.Tensor, doc_emb: torch.Tensor, mask: torch.Tensor, loss: LossOptions,
          directions: torch.Tensor | None, world: WorldInfo,
          distill: tuple[torch.Tensor, ...] | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of this rank's embeddings, over the whole micro-batch of all ranks when `world` has several.

    An empty slice scored on its own (no gathering) has no loss: zero, still tied to the graph so that
    backward reaches every parameter and DDP's all-reduce runs; its parts carry the same names as others'.
    """
    query_emb, doc_emb = distributed.gather_embeddings(query_emb, doc_emb, world)  # (B, D), (B + N, D)
    if query_emb.size(0) == 0:
        zero = (query_emb.sum() + doc_emb.sum()) * 0.0
        return zero, dict.fromkeys([*loss.part_names(), "loss", *DIAGNOSTICS], 0.0)
    if distill is not None:
        total, parts = distill_loss(query_emb, doc_emb, *distill, loss.distill_objective, loss.temperature,
                                    loss.teacher_temperature, loss.normalize, loss.infonce_weight, mask)
    else:
        total, parts = contrastive_loss(query_emb, doc_emb, loss.temperature, loss.normalize, loss.symmetric,
                                        loss.isotropy_weight, directions, mask, loss.matryoshka_dims)
    return total, parts | embedding_diagnostics(query_emb, doc_emb, mask)  # read without gradient
