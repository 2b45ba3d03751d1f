"""Optimizer parameter groups and the learning-rate multiplier as a pure function of the step."""

from __future__ import annotations

import math

import torch
from torch import nn

NO_DECAY_MARKERS = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")


def parameter_groups(model: nn.Module, weight_decay: float, learning_rate: float) -> list[dict]:
    """Two AdamW groups: weight decay on matrices, none on biases and LayerNorm weights."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if any(m in name for m in NO_DECAY_MARKERS) else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay, "lr": learning_rate, "name": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "lr": learning_rate, "name": "no_decay"},
    ]


def build_optimizer(model: nn.Module, weight_decay: float, learning_rate: float) -> torch.optim.AdamW:
    groups = [g for g in parameter_groups(model, weight_decay, learning_rate) if g["params"]]
    for group in groups:
        group["initial_lr"] = group["lr"]
    return torch.optim.AdamW(groups, lr=learning_rate)


def lr_multiplier(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> float:
    """Linear warmup from 0 to 1 over `warmup_steps`, then cosine decay to `min_ratio` at `total_steps`.

    `step` counts optimizer steps from 0; the value is the multiplier for that step's update.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def set_learning_rates(optimizer: torch.optim.Optimizer, multiplier: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * multiplier
