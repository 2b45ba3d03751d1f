"""A run's last checkpoints averaged into averaged/ (train --average-last)."""

from __future__ import annotations

import copy
from pathlib import Path

from ragtrain.files.names import AVERAGED, CHECKPOINT_MODEL, CHECKPOINTS
from ragtrain.model.encoder import Encoder
from ragtrain.model.loading import load_encoder
from ragtrain.model.merging import average_state_dicts
from ragtrain.model.saving import save_encoder
from ragtrain.training.checkpoint import checkpoint_steps


def write_averaged(run_dir: Path, step: int, encoder: Encoder, last: int) -> Path:
    """RUN/averaged: the mean of the run's weights now (`encoder`, those of its last checkpoint, at `step`) and
    of the `last` - 1 checkpoints saved before it; `encoder` is left as it is."""
    earlier = sorted(s for s in checkpoint_steps(run_dir) if s < step)[-(last - 1):] if last > 1 else []
    states = [load_encoder(str(run_dir / CHECKPOINTS / f"step-{s}" / CHECKPOINT_MODEL)).state_dict() for s in earlier]
    states.append({k: v.detach().cpu() for k, v in encoder.state_dict().items()})
    averaged = copy.deepcopy(encoder).cpu()
    averaged.load_state_dict(average_state_dicts(states, [1 / len(states)] * len(states)))
    save_encoder(averaged, run_dir / AVERAGED)
    return run_dir / AVERAGED
