"""Multi-process training under torchrun (the processes and their collectives are model/world.py's).

Without torchrun's variables we run as one process and every function here is a no-op. Each rank takes a contiguous
slice of every global batch, embeds it, and (with gathered negatives) all-gathers the embeddings so every query is
scored against the whole global batch, exactly as one process would score the combined batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ragtrain.model.world import WorldInfo


class EmbedForward(nn.Module):
    """The encoder with `forward = embed` (raw embeddings; the loss normalises them itself).

    DDP synchronises gradients only for what runs through its forward(), so the step must call the
    wrapped module, never `encoder.embed` directly.
    """

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder.embed(input_ids, attention_mask)  # (batch, dim)


def wrap_model(encoder: nn.Module, world: WorldInfo, device: torch.device) -> nn.Module:
    """The encoder's raw-embedding forward; in DistributedDataParallel under torchrun (gradients averaged).

    The unused pooler is frozen in every run, one process too, so that the optimizer's parameter groups,
    and with them a checkpoint's optimizer state, are the same whatever the number of processes.
    """
    model = EmbedForward(encoder)
    freeze_unused_pooler(model)
    if not world.is_distributed:
        return model
    # Transformer buffers (position ids) are constants, so no broadcast before each forward: that broadcast
    # is a collective, and GradCache runs a different number of forwards on ranks with different shares.
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                   broadcast_buffers=False)


def freeze_unused_pooler(model: nn.Module) -> None:
    """Freeze Hugging Face's pooler (a dense layer on [CLS]) that our pooling never calls.

    DDP all-reduces a bucket once every trainable parameter in it has its gradient; a parameter that never
    gets one leaves its bucket unreduced and the ranks silently diverge. find_unused_parameters would cost a
    graph walk per forward and static_graph breaks GradCache's no_sync replays, so the one known unused
    module is frozen instead.
    """
    for name, module in model.named_modules():
        if name.split(".")[-1] == "pooler":
            module.requires_grad_(False)


def shard_batch(batch: list[int], world: WorldInfo) -> list[int]:
    """This rank's contiguous slice of a global batch; slice sizes differ by at most one.

    Every rank computes the same global batches from (seed, epoch), so every rank runs the same number of
    steps. A batch with fewer triples than ranks leaves some ranks an empty slice; they still take part in
    the step (see `step.step_batches`), so no triple is dropped.
    """
    n = len(batch)
    return batch[world.rank * n // world.size : (world.rank + 1) * n // world.size]


def gather_with_grad(tensor: torch.Tensor, world: WorldInfo) -> torch.Tensor:
    """Concatenate every rank's `tensor` along dim 0 in rank order; rows may differ in number per rank.

    all_gather returns copies without a graph, so the local slice is put back: its gradient flows to this
    rank's encoder, while the other ranks' slices are constants here (their own rank computes theirs).
    """
    if not world.is_distributed:
        return tensor
    sizes = _gather_sizes(tensor.size(0), tensor.device, world)
    longest = max(sizes)
    if longest == 0:  # e.g. no hard negatives anywhere in this batch
        return tensor
    padded = torch.zeros((longest, *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
    padded[: tensor.size(0)] = tensor.detach()
    parts = [torch.empty_like(padded) for _ in range(world.size)]
    dist.all_gather(parts, padded)
    parts = [part[:size] for part, size in zip(parts, sizes)]
    parts[world.rank] = tensor
    return torch.cat(parts)


def _gather_sizes(size: int, device: torch.device, world: WorldInfo) -> list[int]:
    local = torch.tensor([size], dtype=torch.long, device=device)
    sizes = [torch.zeros_like(local) for _ in range(world.size)]
    dist.all_gather(sizes, local)
    return [int(s.item()) for s in sizes]


def gather_embeddings(query_emb: torch.Tensor, doc_emb: torch.Tensor, world: WorldInfo) -> tuple[torch.Tensor, torch.Tensor]:
    """Every rank's embeddings in the layout one process gives the combined batch.

    query_emb: (b, D) this rank's queries; doc_emb: (b + n, D) their positives first, then their hard
    negatives. Positives and negatives are gathered separately and laid out as [all positives (B), all hard
    negatives (N)], so global query i's positive is still row i: this rank's j-th query has label j plus the
    number of queries on lower ranks, and no query meets a hard negative in a positive's place.

    Every rank then scores all B queries, not only its own: this rank's documents are negatives for the
    other ranks' queries, and that part of their gradient exists only where those queries are scored. The
    score matrix is (B, B + N), small next to the encoder. See `loss_scale` for DDP's averaging.
    Returns (B, D) and (B + N, D).
    """
    if not world.is_distributed:
        return query_emb, doc_emb
    query_emb, doc_emb = query_emb.float(), doc_emb.float()  # the loss runs in fp32; gloo lacks bf16 gathers
    local = query_emb.size(0)
    all_queries = gather_with_grad(query_emb, world)  # (B, D)
    all_positives = gather_with_grad(doc_emb[:local], world)  # (B, D)
    all_negatives = gather_with_grad(doc_emb[local:], world)  # (N, D)
    return all_queries, torch.cat([all_positives, all_negatives])


def loss_scale(world: WorldInfo, local_queries: int, global_queries: int, gathered: bool) -> float:
    """Factor on the loss before backward so that DDP's gradient average is the global mean loss's gradient.

    DDP averages gradients over ranks. With gathered negatives every rank's loss is the global loss, whose
    local-part gradient is exact, so the average must be undone: times world size. Without gathering, each
    rank's loss is the mean over its own queries; weighting it by its share of the global batch makes the
    average the global mean even when slices differ in size.
    """
    if not world.is_distributed:
        return 1.0
    return float(world.size) if gathered else world.size * local_queries / global_queries


def mean_over_ranks(value: float, world: WorldInfo, device: torch.device) -> float:
    """A scalar averaged over ranks, for logging what rank 0 reports."""
    if not world.is_distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / world.size
