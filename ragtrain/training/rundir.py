"""A training run's directory: one run at a time in it, what a killed run left cleaned up, and, when resuming,
the checkpoint to continue from and the options it keeps.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from ragtrain.config.train import TrainConfig
from ragtrain.errors import UserError
from ragtrain.files import outputdir, runlock
from ragtrain.messages import tell, warn
from ragtrain.model.world import WorldInfo, broadcast_from_main
from ragtrain.training import checkpoint as ckpt


@contextlib.contextmanager
def run_directory(run_dir: Path, world: WorldInfo) -> Iterator[None]:
    """Rank 0 locks the run directory and cleans up what a killed run left there; when another run holds it,
    every rank stops with the same line. The lock is released however the run ends."""
    lock, error = None, None
    try:
        if world.is_main:
            try:
                lock, note = runlock.acquire(run_dir)
                notes = ([note] if note else []) + outputdir.recover_run(run_dir) + ckpt.recover_checkpoints(run_dir)
                for line in notes:
                    tell(f"note: {line}")
            except UserError as exc:
                error = str(exc)
        error = broadcast_from_main(error, world)
        if error:
            raise UserError(error)
        yield
    finally:
        if lock is not None:
            runlock.release(lock)


def resume_point(config: TrainConfig) -> ckpt.Checkpoint | None:
    """Refuse to mix two runs in one directory; with --resume, the checkpoint to continue from."""
    if config.resume:
        return ckpt.load_checkpoint(ckpt.find_checkpoint(config.output_dir, config.resume))
    outputdir.check_run_output(config.output_dir, config.overwrite)
    return None


def resume_config(config: TrainConfig, checkpoint: ckpt.Checkpoint, main: bool = True) -> TrainConfig:
    """The options to resume with (the checkpoint's where they shape the run), validated again: a kept
    value may not fit a changed one, and a checkpoint's config.json may have been edited by hand."""
    config, warnings = ckpt.reconcile_config(config, checkpoint.config)
    config.validate()
    if not main:
        return config
    for warning in warnings:
        warn(f"resuming: {warning}")
    tell(f"resuming from {checkpoint.path} (step {checkpoint.state.step})")
    return config
