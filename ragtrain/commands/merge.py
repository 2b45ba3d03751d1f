"""merge: a weighted average of the weights of models with the same architecture (a model soup, or a fine-tune
interpolated with its base as LM-Cocktail does), saved as a normal ragtrain model."""

from __future__ import annotations

import json
from pathlib import Path

from ragtrain.config.commands import MergeConfig
from ragtrain.errors import UserError
from ragtrain.messages import tell
from ragtrain.model.encoder import Encoder, load_encoder, save_encoder, usable_max_length
from ragtrain.model.textspec import RAGTRAIN_CONFIG
from ragtrain.training.averaging import average_state_dicts

DEFAULT_MAX_LENGTH = 256  # a model that does not say its training length is saved with evaluate's default
# config entries that say where a model came from, not what it is
PROVENANCE_KEYS = {"_name_or_path", "transformers_version", "torch_dtype", "dtype", "_attn_implementation_autoset"}


def merge(config: MergeConfig) -> Path:
    """Load every model (and the base), check they share one architecture, average, save to --output-dir."""
    config.validate()
    names = list(config.models) + ([config.base] if config.base else [])
    loaded = [load_encoder(name) for name in names]
    encoders = [encoder for encoder, _ in loaded]
    require_same_architecture(encoders, names)
    weights = merge_weights(len(config.models), config.weights, config.base_weight if config.base else None)
    merged = encoders[0]
    merged.load_state_dict(average_state_dicts([e.state_dict() for e in encoders], weights))
    tokenizer = loaded[0][1]
    save_encoder(merged, tokenizer, config.output_dir, usable_max_length(merged, tokenizer, saved_max_length(names[0])))
    tell("merged " + " + ".join(f"{w:.3g} x {n}" for w, n in zip(weights, names)) + f" into {config.output_dir}")
    return config.output_dir


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
    return {"pooling": encoder.spec.pooling, "normalize": encoder.spec.normalize,
            "output_dim": encoder.spec.output_dim, **{f"config {k}": v for k, v in config.items()}}


def _shape(shape: tuple | None) -> str:
    return "missing" if shape is None else f"of shape {list(shape)}"


def saved_max_length(name: str) -> int:
    """The max_seq_length a ragtrain model was saved with; evaluate's default for any other."""
    try:
        return int(json.loads((Path(name) / RAGTRAIN_CONFIG).read_text())["max_seq_length"])
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_MAX_LENGTH
