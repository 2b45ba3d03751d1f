"""Training state to disk and back, atomically: `checkpoints/step-N/` holds everything resume needs.

step-N/
  model/          the encoder as a normal model directory (safetensors; loadable on its own)
  optimizer.pt    AdamW state             scaler.pt   GradScaler state
  rng.pt          every rank's torch (CPU and the device: CUDA or MPS), Python and NumPy generator states
  state.json      TrainState: step, epoch, position in the epoch, best metric, early-stopping count
  config.json     the resolved options of the run
Tensors files are read back with `weights_only=True`: a checkpoint cannot run code when loaded.
A checkpoint appears whole (files.atomic.atomic_directory) or not at all; one missing any of CHECKPOINT_FILES (a
half-deleted one from an older ragtrain) is never resumed from and is removed by `recover_checkpoints`.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import pickle
import random
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ragtrain.config.common import as_dict
from ragtrain.config.train import TrainConfig, upgrade_old_options
from ragtrain.errors import UserError
from ragtrain.files.atomic import atomic_directory, atomic_write_json, recover_names, temp_name
from ragtrain.files.names import CHECKPOINT_MODEL, CHECKPOINT_STATE, CHECKPOINTS, RUN_CONFIG
from ragtrain.model.encoder import Encoder
from ragtrain.model.lora import ADAPTER_DIR, is_lora, save_adapter
from ragtrain.model.runtime import device_rng_state, set_device_rng_state
from ragtrain.model.saving import save_encoder
from ragtrain.training.logwindow import EMPTY

STEP_DIR = re.compile(r"^step-(\d+)$")
# Options a run may change on resume; every other option shapes the trajectory, so the checkpoint's value is kept.
MAY_CHANGE = {"average_last", "device", "threads", "eval_steps", "eval_batch_size", "log_steps", "save_steps", "keep_last",
              "early_stopping_patience", "val_data", "eval_data", "eval_split", "metric", "report_to"}
NOT_COMPARED = {"resume", "overwrite", "output_dir", "defaulted"}
# unset (None), these are the model's own; a checkpoint of ragtrain 0.1 recorded the model's resolved value here, which
# is kept without a warning
FROM_MODEL = {"pooling", "normalize", "max_seq_length", "query_prompt", "document_prompt"}
# Every file a checkpoint needs; the weights are model/model.safetensors or, for a sharded save, its index.
CHECKPOINT_FILES = (CHECKPOINT_STATE, RUN_CONFIG, "optimizer.pt", "scaler.pt", "rng.pt", "model/config.json",
                    "model/ragtrain.json")
WEIGHTS = ("model/model.safetensors", "model/model.safetensors.index.json")


@dataclass(frozen=True)
class TrainState:
    step: int = 0  # optimizer steps done
    epoch: int = 0  # epochs completed (logs count epochs from 1: the one under way is epoch + 1)
    batch_in_epoch: int = 0  # index of the next global batch in this epoch's order
    best_metric: float | None = None
    best_step: int | None = None
    evals_without_improvement: int = 0
    skipped_steps: int = 0  # steps without an update: the loss or gradient was not finite (fp16 overflow too)
    skipped_in_a_row: int = 0  # the latest run of such steps; training stops at train.MAX_SKIPPED_IN_A_ROW
    diverged_steps: int = 0  # skipped steps that count against the run: all but an fp16 scaler's overflow of a finite loss
    first_metric: float | None = None  # the watched metric at the first validation (step 0: the base model)
    last_metric: float | None = None  # ... and at the latest one
    stopped_early: bool = False
    train_data_sha256: str | None = None  # what the run trained on, so resume can warn when it changed
    # the steps since the last metrics.jsonl row, whose means the next row logs (logwindow.py)
    log_window: dict = field(default_factory=lambda: dict(EMPTY))


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    state: TrainState
    config: dict

    @property
    def model_dir(self) -> Path:
        return self.path / "model"


def save_checkpoint(run_dir: Path, state: TrainState, encoder: Encoder, optimizer, scaler, config: TrainConfig,
                    rng_by_rank: list[dict] | None = None) -> Path:
    """Write checkpoints/step-N atomically (a crash leaves the previous checkpoints intact), then prune.

    rng_by_rank: every rank's `rng_states`, in rank order (default: this process's alone).
    """
    final = run_dir / CHECKPOINTS / f"step-{state.step}"
    with atomic_directory(final, overwrite=True) as tmp:
        save_encoder(encoder, tmp / CHECKPOINT_MODEL)
        if is_lora(encoder.transformer):  # --resume puts this adapter back on the base model, not on model/'s merge
            save_adapter(encoder.transformer, tmp / ADAPTER_DIR)
        _torch_save(optimizer.state_dict(), tmp / "optimizer.pt")
        _torch_save(scaler.state_dict(), tmp / "scaler.pt")
        _torch_save({"ranks": rng_by_rank or [rng_states()]}, tmp / "rng.pt")
        atomic_write_json(tmp / CHECKPOINT_STATE, dataclasses.asdict(state))
        atomic_write_json(tmp / RUN_CONFIG, as_dict(config))
    prune_checkpoints(run_dir, config.keep_last, state.best_step)
    return final


def _torch_save(obj, path: Path) -> None:
    """torch.save through a Python file: a full disk then surfaces as OSError(ENOSPC) behind torch's
    RuntimeError (writing to a path, torch's C++ writer reports no errno), so it becomes one clear line."""
    with open(path, "xb") as handle:
        torch.save(obj, handle)


def prune_checkpoints(run_dir: Path, keep_last: int, best_step: int | None) -> None:
    """Delete all but the newest `keep_last` step checkpoints and the best one."""
    steps = sorted(checkpoint_steps(run_dir))
    for step in steps[:-keep_last]:
        if step != best_step:
            path = run_dir / CHECKPOINTS / f"step-{step}"
            doomed = temp_name(path)  # renamed first: a kill mid-delete leaves a temporary, not half a checkpoint
            os.rename(path, doomed)
            shutil.rmtree(doomed, ignore_errors=True)


def checkpoint_steps(run_dir: Path, complete: bool = True) -> list[int]:
    """Steps of the run's step-N checkpoints: the complete ones, or (complete=False) every step-N folder."""
    folder = run_dir / CHECKPOINTS
    if not folder.is_dir():
        return []
    return [int(m.group(1)) for p in folder.iterdir()
            if p.is_dir() and (m := STEP_DIR.match(p.name)) and (not complete or not missing_files(p))]


def missing_files(path: Path) -> list[str]:
    """What a checkpoint directory lacks to be resumed from ([] for a complete one)."""
    missing = [name for name in CHECKPOINT_FILES if not (path / name).is_file()]
    return missing + ([WEIGHTS[0]] if not any((path / name).is_file() for name in WEIGHTS) else [])


def last_checkpoint_note(run_dir: Path) -> str:
    """Which checkpoint a run that stops now leaves to resume from, for its error message."""
    steps = checkpoint_steps(run_dir)
    if not steps:
        return "no checkpoint was saved"
    return f"the last good checkpoint is kept: {run_dir / CHECKPOINTS / f'step-{max(steps)}'}"


def recover_checkpoints(run_dir: Path) -> list[str]:
    """After a killed run: a checkpoint set aside mid-replace is put back, half-written temporaries are removed,
    and so are incomplete step-N folders (an older ragtrain deleted before replacing). Returns notes."""
    folder = run_dir / CHECKPOINTS
    notes = recover_names(folder, lambda name: STEP_DIR.match(name) is not None)
    for step in sorted(set(checkpoint_steps(run_dir, complete=False)) - set(checkpoint_steps(run_dir))):
        path = folder / f"step-{step}"
        shutil.rmtree(path)
        notes.append(f"removed the incomplete checkpoint {path} (left by a killed run; it could not be resumed from)")
    return notes


def find_checkpoint(run_dir: Path, resume: str) -> Path:
    """`latest` -> the newest step-N in the run directory; anything else is a checkpoint path."""
    if resume != "latest":
        path = Path(resume)
        if not (path / CHECKPOINT_STATE).is_file():
            raise UserError(f"--resume {resume}: not a checkpoint (no state.json); pass a checkpoints/step-N "
                            "directory, or --resume alone for the latest one")
        if missing := missing_files(path):
            raise UserError(f"--resume {resume}: incomplete checkpoint (no {missing[0]}); pass another one, or "
                            "--resume alone for the latest complete one")
        return path
    steps = checkpoint_steps(run_dir)
    if not steps:
        raise UserError(f"--resume: no checkpoint in {run_dir / CHECKPOINTS}; start without --resume "
                        "(or pass --overwrite to replace the run)")
    return run_dir / CHECKPOINTS / f"step-{max(steps)}"


def load_checkpoint(path: Path) -> Checkpoint:
    state = TrainState(**json.loads((path / CHECKPOINT_STATE).read_text()))
    return Checkpoint(path, state, json.loads((path / RUN_CONFIG).read_text()))


def restore_training(checkpoint: Checkpoint, optimizer, scaler, device: torch.device, rank: int = 0) -> int:
    """Optimizer, scaler and this rank's RNG states back in place (the model is loaded from checkpoint.model_dir).

    Returns the number of ranks that wrote the checkpoint. A rank it has no state for keeps its freshly
    seeded generators: the run goes on, but its dropout draws differ from an uninterrupted run's.
    """
    saved = _load_tensors(checkpoint.path / "optimizer.pt", device)
    try:
        optimizer.load_state_dict(saved)
    except ValueError as exc:  # parameter groups that differ: another model, head or ragtrain version
        raise UserError(f"checkpoint {checkpoint.path} does not fit this model's optimizer ({exc}); resume with "
                        "the options and ragtrain version that wrote it, or start a new run") from None
    scaler.load_state_dict(_load_tensors(checkpoint.path / "scaler.pt"))
    rng = _load_tensors(checkpoint.path / "rng.pt")
    ranks = rng["ranks"] if "ranks" in rng else [rng]  # before every rank's state was kept: rank 0's alone
    if rank < len(ranks):
        set_rng_states(ranks[rank], device)
    return len(ranks)


def _load_tensors(path: Path, device: torch.device | None = None):
    """A checkpoint's .pt file, loaded with torch's weights_only guard: one that holds other objects (a pickle that
    could run code) or is damaged is one line, not torch's page of advice to turn the guard off."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        raise UserError(f"checkpoint file {path} cannot be loaded safely ({type(exc).__name__}: it is damaged or holds "
                        "objects other than tensors, which ragtrain never writes); resume from a checkpoint ragtrain "
                        "wrote, or start a new run") from None


def rng_states(device: torch.device = torch.device("cpu")) -> dict:
    """This process's generators: torch's CPU one, the device's (CUDA or MPS; none on CPU), Python's, NumPy's."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "device_type": device.type,
        "device": device_rng_state(device),
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]],
    }


def rng_states_to_bytes(states: dict) -> bytes:
    """`rng_states` as bytes, to send between ranks (all_gather_object fails to unpickle tensors here)."""
    buffer = io.BytesIO()
    torch.save(states, buffer)
    return buffer.getvalue()


def rng_states_from_bytes(blob: bytes) -> dict:
    return torch.load(io.BytesIO(blob), weights_only=True)


def set_rng_states(states: dict, device: torch.device = torch.device("cpu")) -> None:
    """Put back what `rng_states` saved; the device's state only on a device of the same type."""
    torch.set_rng_state(states["torch"])
    if states.get("device_type") == device.type:
        set_device_rng_state(device, states.get("device"))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    name, key, *rest = states["numpy"]
    np.random.set_state((name, key.numpy(), *rest))


def reconcile_config(config: TrainConfig, saved: dict) -> tuple[TrainConfig, list[str]]:
    """The config to resume with, and one warning per option that differs from the checkpoint's.

    Options in MAY_CHANGE take the new value; the others keep the checkpoint's (changing the batch size or
    the schedule half-way would not be "the same run, continued"), and the warning says so.
    """
    kept, warnings, saved = {}, [], upgrade_old_options(saved)
    for name, new in as_dict(config).items():
        if name in NOT_COMPARED or name not in saved:
            continue
        old = _typed(getattr(config, name), saved[name])
        if old == getattr(config, name):
            continue
        if new is None and name in FROM_MODEL:
            kept[name] = old
        elif name in MAY_CHANGE:
            warnings.append(f"--{name.replace('_', '-')} differs from the checkpoint ({saved[name]!r}); using {new!r}")
        else:
            kept[name] = old
            warnings.append(f"--{name.replace('_', '-')} {new!r} differs from the checkpoint; keeping the "
                            f"checkpoint's {saved[name]!r} (it must not change within a run)")
    return dataclasses.replace(config, **kept), warnings


def _typed(example, value):
    """A JSON value back in the config's type: paths were saved as strings, tuples as lists."""
    if isinstance(example, Path) and value is not None:
        return Path(value)
    if isinstance(example, tuple) and isinstance(value, list):
        return tuple(value)
    return value
