"""Weights averaged: the weighted mean of state dicts (merge's soups and interpolations) and a run's last
checkpoints averaged into averaged/ (train --average-last)."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from ragtrain.files.names import AVERAGED, CHECKPOINT_MODEL, CHECKPOINTS
from ragtrain.model.encoder import Encoder, load_encoder, save_encoder
from ragtrain.training.checkpoint import checkpoint_steps


@torch.no_grad()
def average_state_dicts(states: list[dict[str, torch.Tensor]], weights: list[float]) -> dict[str, torch.Tensor]:
    """sum_i weights[i] * states[i][name] for every tensor, computed in float64 and returned in the first
    state's dtypes. Integer tensors (position ids, counters) are the first state's, unchanged."""
    merged = {}
    for name, first in states[0].items():
        if not first.is_floating_point():
            merged[name] = first.clone()
            continue
        total = torch.zeros_like(first, dtype=torch.float64)
        for weight, state in zip(weights, states):
            total += weight * state[name].to(torch.float64)
        merged[name] = total.to(first.dtype)
    return merged


def write_averaged(run_dir: Path, step: int, encoder: Encoder, tokenizer, last: int, max_seq_length: int) -> Path:
    """RUN/averaged: the mean of the run's weights now (`encoder`, those of its last checkpoint, at `step`) and
    of the `last` - 1 checkpoints saved before it; `encoder` is left as it is."""
    earlier = sorted(s for s in checkpoint_steps(run_dir) if s < step)[-(last - 1):] if last > 1 else []
    states = [load_encoder(str(run_dir / CHECKPOINTS / f"step-{s}" / CHECKPOINT_MODEL))[0].state_dict() for s in earlier]
    states.append({k: v.detach().cpu() for k, v in encoder.state_dict().items()})
    averaged = copy.deepcopy(encoder).cpu()
    averaged.load_state_dict(average_state_dicts(states, [1 / len(states)] * len(states)))
    save_encoder(averaged, tokenizer, run_dir / AVERAGED, max_seq_length)
    return run_dir / AVERAGED
