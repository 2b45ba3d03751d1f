"""merge's options: one frozen MergeConfig. validate() reads no disk."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ragtrain.config.common import require
from ragtrain.config.options import option
from ragtrain.errors import UserError

# -------------------------------------------------------------------------------------------------- merge
MODELS, OUTPUT = "Models", "Output"  # --help panels
def parse_weights(value: str | None) -> tuple[float, ...] | None:
    """'0.5,0.3,0.2' -> (0.5, 0.3, 0.2)."""
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise UserError(f"--weights must be comma-separated numbers such as 0.5,0.5, got {value!r}") from None


@dataclass(frozen=True)
class MergeConfig:
    models: tuple[str, ...] = option(help="Models to average, all of one architecture: ragtrain or "
        "sentence-transformers directories, runs' best/ or final/, Hugging Face names.", panel=MODELS, argument=True,
        cli_type=list[str], parse=tuple)
    output_dir: Path = option(help="Where the merged model is written (the files of train's final/).", panel=OUTPUT,
                              decls=("--output-dir", "-o"))
    weights: tuple[float, ...] | None = option(None, "Each model's weight, comma-separated, in their order (scaled "
        "to sum to 1). Default: equal.", panel=MODELS, cli_type=Optional[str], parse=parse_weights)
    base: str | None = option(None, "A base model to interpolate with: (1 - W) x the models' average + W x the "
        "base (LM-Cocktail), keeping more of its general skill.", panel=MODELS)
    base_weight: float = option(0.5, "W, the base model's share with --base, in [0, 1].", panel=MODELS)
    overwrite: bool = option(False, "Replace an earlier merge in --output-dir.", panel=OUTPUT)

    def validate(self) -> "MergeConfig":
        count = len(self.models) + (1 if self.base else 0)
        require(count >= 2, "merge needs two models, or one model and --base; give more models")
        require(self.weights is None or len(self.weights) == len(self.models),
               f"--weights gives {len(self.weights or ())} weights for {len(self.models)} models; give one per model")
        for w in self.weights or ():
            require(math.isfinite(w) and w >= 0, f"--weights must be finite and 0 or more, got {w}")
        require(self.weights is None or sum(self.weights) > 0, "--weights are all 0; give at least one positive weight")
        require(0 <= self.base_weight <= 1 and math.isfinite(self.base_weight),
               f"--base-weight must be in [0, 1], got {self.base_weight}")
        return self
