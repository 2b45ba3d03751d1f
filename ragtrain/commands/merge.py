"""merge: a weighted average of the weights of models with the same architecture (a model soup, or a fine-tune
interpolated with its base as LM-Cocktail does), saved as a normal ragtrain model."""

from __future__ import annotations

from pathlib import Path

from ragtrain.commands.preflight import check_merge
from ragtrain.config.merge import MergeConfig
from ragtrain.messages import tell
from ragtrain.model.loading import load_encoder, resolve_model_dir
from ragtrain.model.merging import average_state_dicts, merge_weights, require_same_architecture
from ragtrain.model.saving import save_encoder


def merge(config: MergeConfig) -> Path:
    """Load every model (and the base), check they share one architecture, average, save to --output-dir with the
    first model's tokenizer and text settings."""
    config.validate()
    check_merge(config)
    names = list(config.models) + ([config.base] if config.base else [])
    resolved = [resolve_model_dir(name) for name in names]  # a training run is its best/ (else final/), as in evaluate
    for name, path in zip(names, resolved):
        if Path(name).expanduser().is_dir() and Path(path) != Path(name).expanduser():
            tell(f"{name}: merging its model {path}")
    encoders = [load_encoder(path) for path in resolved]
    require_same_architecture(encoders, names)
    weights = merge_weights(len(config.models), config.weights, config.base_weight if config.base else None)
    merged = encoders[0]
    merged.load_state_dict(average_state_dicts([e.state_dict() for e in encoders], weights))
    save_encoder(merged, config.output_dir)
    tell("merged " + " + ".join(f"{w:.3g} x {n}" for w, n in zip(weights, names)) + f" into {config.output_dir}")
    return config.output_dir
