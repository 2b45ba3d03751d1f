"""GradCache: the contrastive loss of a big batch with the activation memory of a mini-batch.

The loss couples every query with every document, so a batch of B normally keeps B encoders' activations
alive until backward. GradCache (Gao et al., 2021, "Scaling Deep Contrastive Learning Batch Size under
Memory Limited Setup") splits the step in three:
  1. embed the batch mini-batch by mini-batch without a graph (no activations kept);
  2. compute the loss on those embeddings and backpropagate it to the embeddings only (cheap);
  3. re-embed each mini-batch with a graph and backpropagate the cached embedding gradient through it.
The parameter gradient is the same as the uncached one: the chain rule, split at the embeddings.
(Gradient checkpointing, the other trade of compute for activation memory, is the model's: model.py.)
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch
from torch import nn

from ragtrain.model.runtime import device_rng_state, set_device_rng_state


class RandContext:
    """The RNG state at creation, restored inside `with`: the re-embedding draws the same dropout masks.

    It covers the CPU generator and that of every accelerator (CUDA, MPS) the given tensors live on, and
    on exit puts back the states found on entry, so replaying does not shift later random draws.
    """

    def __init__(self, *tensors: torch.Tensor):
        self.devices = sorted({t.device for t in tensors if t.device.type != "cpu"}, key=str)
        self.cpu_state = torch.get_rng_state()
        self.device_states = [device_rng_state(d) for d in self.devices]
        self._outer: tuple | None = None

    def __enter__(self) -> None:
        self._outer = (torch.get_rng_state(), [device_rng_state(d) for d in self.devices])
        torch.set_rng_state(self.cpu_state)
        for device, state in zip(self.devices, self.device_states):
            set_device_rng_state(device, state)

    def __exit__(self, *exc) -> None:
        cpu_state, device_states = self._outer
        torch.set_rng_state(cpu_state)
        for device, state in zip(self.devices, device_states):
            set_device_rng_state(device, state)
        self._outer = None


def chunks(inputs: dict[str, torch.Tensor], size: int) -> list[dict[str, torch.Tensor]]:
    """Row slices of a tokenised batch, each trimmed to its own longest sequence (less padding per chunk)."""
    parts = []
    for start in range(0, inputs["input_ids"].size(0), size):
        part = {k: v[start : start + size] for k, v in inputs.items()}
        longest = int(part["attention_mask"].sum(dim=1).max().item())
        parts.append({k: v[:, :longest] for k, v in part.items()})
    return parts


@torch.no_grad()
def embed_without_graph(encoder: nn.Module, parts: list[dict], autocast) -> tuple[torch.Tensor, list[RandContext]]:
    """Step 1: embeddings of every chunk, no activations kept, and the RNG state each chunk started from."""
    embs, states = [], []
    for part in parts:
        states.append(RandContext(*part.values()))
        with autocast():
            embs.append(encoder(**part).float())  # (m, D)
    return torch.cat(embs), states


def grad_cache_step(encoder: nn.Module, queries: dict, docs: dict, loss_fn: Callable, mini_batch_size: int,
                    backward: Callable = torch.Tensor.backward, autocast=contextlib.nullcontext) -> Any:
    """Accumulate into `encoder`'s .grad the gradient of the loss of query_emb (B, D), doc_emb (B + N, D).

    `encoder(input_ids, attention_mask)` returns embeddings; it may be DistributedDataParallel, whose
    gradients are then all-reduced once, on the last chunk's backward. `loss_fn(query_emb, doc_emb)` returns
    (loss, report); `backward(loss)` runs the loss's backward (the caller's DDP and AMP scaling go there).
    Returns the report.
    """
    query_parts, doc_parts = chunks(queries, mini_batch_size), chunks(docs, mini_batch_size)
    query_emb, query_states = embed_without_graph(encoder, query_parts, autocast)  # (B, D)
    doc_emb, doc_states = embed_without_graph(encoder, doc_parts, autocast)  # (B + N, D)
    query_emb.requires_grad_(True)
    doc_emb.requires_grad_(True)
    loss, report = loss_fn(query_emb, doc_emb)
    backward(loss)  # step 2: gradients w.r.t. the embeddings only; no encoder graph exists yet
    query_grads = query_emb.grad.split(mini_batch_size)
    doc_grads = doc_emb.grad.split(mini_batch_size)
    replays = list(zip(query_parts + doc_parts, query_states + doc_states, query_grads + doc_grads))
    no_sync = getattr(encoder, "no_sync", contextlib.nullcontext)  # DDP: all-reduce only once, at the end
    for n, (part, state, grad) in enumerate(replays):
        last = n == len(replays) - 1
        with state, (contextlib.nullcontext() if last else no_sync()):
            with autocast():
                emb = encoder(**part).float()  # (m, D), now with a graph
            emb.backward(gradient=grad)  # step 3: the cached gradient through this chunk's encoder
    return report
