"""AdamW parameter groups (base/head rates, no decay on biases and normalisation layers) and the lr multiplier per step."""

from __future__ import annotations

import math

import torch
from torch import nn


def parameter_groups(model: nn.Module, weight_decay: float, base_lr: float, head_lr: float) -> list[dict]:
    """Up to four AdamW groups: {base, head} x {decay, no_decay}; frozen parameters are left out.

    The head is the projection (`projection.*`); everything else is the base transformer. Weight decay
    pulls weights towards zero, which is right for matrices but wrong for biases and normalisation gains.
    """
    skip = no_decay_parameters(model)
    groups: dict[str, dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        part = "head" if name.startswith("projection.") else "base"
        decays = id(param) not in skip
        key = f"{part}_{'decay' if decays else 'no_decay'}"
        group = groups.setdefault(key, {"params": [], "name": key, "weight_decay": weight_decay if decays else 0.0,
                                        "lr": head_lr if part == "head" else base_lr})
        group["params"].append(param)
    order = ("base_decay", "base_no_decay", "head_decay", "head_no_decay")
    return [groups[key] for key in order if key in groups]


def no_decay_parameters(model: nn.Module) -> set[int]:
    """ids of the parameters weight decay leaves alone: every 1-D one (biases, gains) and every parameter of a
    normalisation module, told by its type whatever the architecture calls it (BERT's LayerNorm, GPT-2's ln_1,
    Llama's and Qwen's RMSNorm, T5's LayerNorm: all have "Norm" in their class name)."""
    skip = set()
    for module in model.modules():
        norm = "norm" in type(module).__name__.lower()
        skip.update(id(p) for p in module.parameters(recurse=False) if norm or p.ndim < 2)
    return skip


def build_optimizer(model: nn.Module, weight_decay: float, base_lr: float, head_lr: float) -> torch.optim.AdamW:
    groups = parameter_groups(model, weight_decay, base_lr, head_lr)
    for group in groups:
        group["initial_lr"] = group["lr"]  # the peak rate; the schedule scales it each step
    # foreach: one fused kernel per group instead of a Python loop over ~100 tensors
    return torch.optim.AdamW(groups, lr=base_lr, foreach=True)


def lr_multiplier(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> float:
    """Linear warmup to 1 over `warmup_steps`, then cosine decay reaching `min_ratio` at the last step.

    `step` counts optimizer steps from 0; the value scales that step's update. Step 0 of a warmup gets
    1/warmup_steps (not 0, which would waste the step); step warmup_steps - 1 gets 1.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    last = max(1, total_steps - 1 - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / last)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def set_learning_rates(optimizer: torch.optim.Optimizer, multiplier: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * multiplier


def learning_rates(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """The current rate of each named group, for the log: {"lr_base_decay": ..., ...}."""
    return {f"lr_{group['name']}": group["lr"] for group in optimizer.param_groups}
