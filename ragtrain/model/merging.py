"""Weights of several models of one architecture averaged: a model soup, or a fine-tune interpolated with its base
as LM-Cocktail does (merge), and a run's last checkpoints (train --average-last). Models that do not share one
architecture are refused with the first difference named."""

from __future__ import annotations

import torch

from ragtrain.errors import UserError
from ragtrain.model.encoder import Encoder

# config entries that say where a model came from, not what it is
PROVENANCE_KEYS = {"_name_or_path", "transformers_version", "torch_dtype", "dtype", "_attn_implementation_autoset"}


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


def merge_weights(count: int, weights: tuple[float, ...] | None, base_weight: float | None) -> list[float]:
    """Each model's share (equal unless given, scaled to sum to 1), then the base's, the models' scaled by
    1 - base_weight: `count` numbers, plus one for the base."""
    shares = list(weights) if weights else [1.0] * count
    total = sum(shares)
    shares = [w / total for w in shares]
    if base_weight is None:
        return shares
    return [w * (1 - base_weight) for w in shares] + [base_weight]


def require_same_architecture(encoders: list[Encoder], names: list[str]) -> None:
    """Same pooling, normalisation and head; the same transformer config (provenance aside); the same tensors by
    name and shape. Otherwise one line naming the first difference and the two models."""
    first, first_name = encoders[0], names[0]
    reference = _architecture(first)
    shapes = {k: tuple(v.shape) for k, v in first.state_dict().items()}
    for encoder, name in zip(encoders[1:], names[1:]):
        where = f"cannot merge {name} with {first_name}"
        for key, value in _architecture(encoder).items():
            if reference.get(key) != value:
                raise UserError(f"{where}: their {key} differ ({reference.get(key)!r} against {value!r}); merge only "
                                "models fine-tuned from one base with the same options")
        other = {k: tuple(v.shape) for k, v in encoder.state_dict().items()}
        for key in sorted(shapes.keys() | other.keys()):
            if shapes.get(key) != other.get(key):
                raise UserError(f"{where}: tensor {key} is {_shape(shapes.get(key))} in the first and "
                                f"{_shape(other.get(key))} in the other; merge only models of one architecture")


def _architecture(encoder: Encoder) -> dict:
    """What must agree: pooling, head and the transformer's config, less provenance and dropout rates (train saves
    its model with attention dropout off, its base has it on: the weights mean the same)."""
    config = {k: v for k, v in encoder.transformer.config.to_dict().items()
              if k not in PROVENANCE_KEYS and "dropout" not in k}
    return {"pooling": encoder.settings.pooling, "normalize": encoder.settings.normalize,
            "output_dim": encoder.output_dim, **{f"config {k}": v for k, v in config.items()}}


def _shape(shape: tuple | None) -> str:
    return "missing" if shape is None else f"of shape {list(shape)}"
