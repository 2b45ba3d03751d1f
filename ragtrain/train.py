"""train(config) -> path of the final model: set up, one straight loop over global batches, clean up.

The run directory holds config.json, metrics.jsonl, checkpoints/step-N/, best/ and final/, and while a run
is alive its lock file (runlock.py): one run per directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from torch import nn
from tqdm import tqdm

from ragtrain import checkpoint as ckpt
from ragtrain import distributed, outputdir, runlock
from ragtrain.checkpoint import TrainState
from ragtrain.config import TrainConfig, as_dict
from ragtrain.data import TokenizedTriples, epoch_batches, load_triples, tokenize_triples
from ragtrain.distributed import WorldInfo
from ragtrain.errors import UserError
from ragtrain.evaldata import EvalData, dropped_message, load_eval_data
from ragtrain.fileio import atomic_write_json, atomic_write_text, file_sha256
from ragtrain.model import (Encoder, EncoderSpec, enable_gradient_checkpointing, freeze_base, load_encoder, save_encoder,
                            usable_max_length)
from ragtrain.messages import tell, warn
from ragtrain.optim import build_optimizer, learning_rates, lr_multiplier, set_learning_rates
from ragtrain.runtime import Runtime, peak_memory_mb, resolve_device, return_freed_memory_to_os, training_runtime
from ragtrain.step import StepResult, step_batches, step_directions, train_step
from ragtrain.summary import training_table
from ragtrain.validation import is_better, run_validation

MAX_SKIPPED_IN_A_ROW = 10  # steps in a row without a finite loss and gradient before the run stops


@dataclass(frozen=True)
class Run:
    """What the loop reads, set up once: options, placement, model, optimizer and tokenised data."""

    config: TrainConfig
    world: WorldInfo
    runtime: Runtime  # device and precision
    encoder: Encoder  # for saving and validation
    tokenizer: object
    model: nn.Module  # the encoder's embed, in DDP under torchrun: what the step calls
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    data: TokenizedTriples
    val_data: TokenizedTriples | None
    eval_set: EvalData | None
    total_steps: int
    warmup: int


def train(config: TrainConfig) -> Path:
    """Train on one process, or as one rank of a torchrun job (then only rank 0 writes and prints)."""
    config.validate()
    world = distributed.world_from_env()
    device = resolve_device(config.device, world.local_rank if world.is_distributed else None)
    runtime = training_runtime(device, config.mixed_precision, config.precision)  # fp16 on a CPU fails here
    distributed.setup(world, runtime.device)
    try:
        with _run_directory(config.output_dir, world):
            return _train(config, world, runtime)
    finally:
        distributed.cleanup(world)


@contextlib.contextmanager
def _run_directory(run_dir: Path, world: WorldInfo) -> Iterator[None]:
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
        error = distributed.broadcast_from_main(error, world)
        if error:
            raise UserError(error)
        yield
    finally:
        if lock is not None:
            runlock.release(lock)


def _train(config: TrainConfig, world: WorldInfo, runtime: Runtime) -> Path:
    main = world.is_main
    resume_from = _check_output_dir(config)
    run, state = _setup(config, world, runtime, resume_from)
    config, device = run.config, run.runtime.device
    distributed.barrier(world)  # every rank has checked the output directory before rank 0 changes it
    if main and config.overwrite and resume_from is None:
        outputdir.clear_run(config.output_dir)  # only now: a failed setup leaves the old run untouched
    if main:
        tell(f"device: {device}" + (" (auto: cuda, then mps, then cpu)" if config.device == "auto" else "")
             + (f" x {world.size} processes" if world.is_distributed else "")
             + f"; {len(run.data)} triples, {run.total_steps} steps, warmup {run.warmup}")
        atomic_write_json(config.output_dir / "config.json", as_dict(config) | {
            "device_resolved": str(device), "total_steps": run.total_steps, "warmup_steps_resolved": run.warmup,
            "world_size": world.size})
    started = time.perf_counter()
    rates: list[float] = []
    with _metrics_log(config.output_dir, state.step) if main else contextlib.nullcontext() as log:
        if state.step == 0:  # the base model first: the curve's origin, and best/ is never worse than it
            _validate_and_keep(run, state, log, 0)
        _loop(run, state, log, rates)
    _require_finite_weights(run.encoder, state, config)
    final = config.output_dir / "final"
    if main:
        save_encoder(run.encoder, run.tokenizer, final, config.max_seq_length)
        Console().print(training_table(config, state, rates, time.perf_counter() - started, run.total_steps,
                                       peak_memory_mb(device)))
    distributed.barrier(world)  # no rank returns before final/ is written
    return final


def _setup(config: TrainConfig, world: WorldInfo, runtime: Runtime,
           resume_from: ckpt.Checkpoint | None) -> tuple[Run, TrainState]:
    """Options (reconciled with a checkpoint), data, model, optimizer; the state to start or resume from."""
    if resume_from is not None:
        config = _resume_config(config, resume_from, world.is_main)
        # the checkpoint's precision, which the run keeps, on this run's device
        runtime = training_runtime(runtime.device, config.mixed_precision, config.precision)
    device = runtime.device
    if config.threads:
        torch.set_num_threads(config.threads)
    if device.type == "cpu":
        return_freed_memory_to_os()
    triples = load_triples(config.train_data)  # bad data fails before the (slow) model load
    val_triples = load_triples(config.val_data) if config.val_data else None
    eval_set = load_eval_data(config.eval_data, config.eval_split, "--eval-split") if config.eval_data else None
    if world.is_main and eval_set is not None and (message := dropped_message(eval_set, config.eval_data)):
        warn(message)
    seed_everything(config.seed)
    spec = EncoderSpec(config.pooling, config.normalize, config.output_dim)
    encoder, tokenizer = load_encoder(str(resume_from.model_dir) if resume_from else config.model, spec,
                                      attention_dropout=config.attention_dropout)
    config = _cap_max_seq_length(config, encoder, tokenizer, world.is_main)
    if config.freeze_base:
        freeze_base(encoder)
    encoder.to(device).train()
    if config.gradient_checkpointing:
        enable_gradient_checkpointing(encoder)
    model = distributed.wrap_model(encoder, world, device)
    data = tokenize_triples(triples, tokenizer, config.max_seq_length)  # once, before the loop
    _require_something_to_contrast(data, config)
    val_data = tokenize_triples(val_triples, tokenizer, config.max_seq_length) if val_triples else None
    total_steps = math.ceil(len(data) / config.batch_size) * config.epochs  # every epoch has as many batches
    warmup = config.warmup_steps if config.warmup_steps is not None else math.ceil(config.warmup_ratio * total_steps)
    if world.is_main and warmup > total_steps:
        warn(f"--warmup-steps {warmup} is more than the run's {total_steps} steps: the learning rate never "
             "reaches its peak; lower --warmup-steps")
    optimizer = build_optimizer(encoder, config.weight_decay, config.base_lr, config.head_lr)
    scaler = runtime.grad_scaler()
    state = TrainState(train_data_sha256=file_sha256(config.train_data))
    if resume_from is not None:
        state = _restore(resume_from, config, optimizer, scaler, device, world, state.train_data_sha256)
    run = Run(config, world, runtime, encoder, tokenizer, model, optimizer, scaler, data, val_data, eval_set,
              total_steps, warmup)
    return run, state


def _loop(run: Run, state: TrainState, log, rates: list[float]) -> None:
    """The epochs from where `state` stands: steps, logs, validations, checkpoints, early stopping."""
    config = run.config
    for epoch in range(state.epoch, config.epochs):
        if state.stopped_early:  # decided at the previous epoch's end, or before the checkpoint was written
            return
        batches = epoch_batches(run.data, config.batch_size, config.seed, epoch, config.group_by_length)
        with tqdm(total=run.total_steps, initial=state.step, desc=f"epoch {epoch + 1}/{config.epochs}", unit="step",
                  disable=not run.world.is_main) as progress:  # closed on an error too: its line ends before the error's
            for index in range(state.batch_in_epoch, len(batches)):
                result, seconds = _step(run, state, batches[index])
                state.step, state.batch_in_epoch = state.step + 1, index + 1
                rates.append(result.triples / seconds)
                progress.update(1)
                progress.set_postfix(loss=f"{result.parts['loss']:.4f}", tps=f"{rates[-1]:.1f}",
                                     lr=f"{next(iter(learning_rates(run.optimizer).values())):.2e}")
                _after_step(run, result, state, log, epoch, seconds)
                validate = bool(config.eval_steps) and state.step % config.eval_steps == 0
                if validate:
                    _validate_and_keep(run, state, log, epoch)
                if validate or (config.save_steps and state.step % config.save_steps == 0):
                    _save_checkpoint(run, state)
                if state.stopped_early:
                    break
        if state.stopped_early:
            return
        state.epoch, state.batch_in_epoch = epoch + 1, 0
        if not (config.eval_steps and state.step % config.eval_steps == 0):  # not validated at this very step
            _validate_and_keep(run, state, log, epoch)
        _save_checkpoint(run, state)


def _step(run: Run, state: TrainState, batch: list[int]) -> tuple[StepResult, float]:
    """One optimizer step on a global batch at the schedule's rate for `state.step`; its result and seconds."""
    config, tick = run.config, time.perf_counter()
    set_learning_rates(run.optimizer, lr_multiplier(state.step, run.warmup, run.total_steps, config.min_lr_ratio))
    parts = step_batches(run.data, batch, config, run.world, run.tokenizer.pad_token_id or 0)
    directions = step_directions(config, run.encoder, state.step, run.runtime.device)
    result = train_step(run.model, run.optimizer, run.scaler, parts, config, run.runtime, directions, run.world)
    return result, time.perf_counter() - tick


def _after_step(run: Run, result: StepResult, state: TrainState, log, epoch: int, seconds: float) -> None:
    """Count a skipped step, log the step, and stop the run after MAX_SKIPPED_IN_A_ROW skipped steps in a row."""
    config = run.config
    state.skipped_steps += result.skipped
    state.skipped_in_a_row = state.skipped_in_a_row + 1 if result.skipped else 0
    stop = state.skipped_in_a_row >= MAX_SKIPPED_IN_A_ROW
    if state.step % config.log_steps == 0 or state.step == run.total_steps or stop:
        _log(log, {"step": state.step, "epoch": epoch, **learning_rates(run.optimizer), **result.parts,
                   "grad_norm": result.grad_norm, "batch_size": result.triples, "masked_candidates": result.masked,
                   "triples_per_s": result.triples / seconds, "tokens_per_s": result.real_tokens / seconds,
                   "memory_mb": peak_memory_mb(run.runtime.device), "skipped_steps": state.skipped_steps})
    if stop:
        raise UserError(f"training stopped at step {state.step}: the loss or the gradient was not finite in "
                        f"{state.skipped_in_a_row} steps in a row (each skipped, no update); {_last_checkpoint(config)}; "
                        "lower --learning-rate (or check the training data) and start again")


def _require_something_to_contrast(data: TokenizedTriples, config: TrainConfig) -> None:
    """At least two different passages (as token ids): with one, every other candidate is masked as a repeat of
    the positive, the loss is zero and the run would "succeed" without learning anything."""
    passages = {tuple(ids) for ids in data.positives} | {tuple(ids) for negs in data.negatives for ids in negs}
    if len(passages) < 2:
        raise UserError(f"{config.train_data} holds a single distinct passage (at --max-seq-length "
                        f"{config.max_seq_length}), so there is nothing to contrast it with; add triples with other "
                        "positives or negatives")


def _require_finite_weights(encoder: Encoder, state: TrainState, config: TrainConfig) -> None:
    """Refuse to save a model whose weights are NaN or infinite (every rank holds the same weights)."""
    if bool(torch.stack([torch.isfinite(p).all() for p in encoder.parameters()]).all()):
        return
    raise UserError(f"training diverged: the weights are not finite after step {state.step}, so nothing more is "
                    f"saved; {_last_checkpoint(config)}; lower --learning-rate and start again")


def _last_checkpoint(config: TrainConfig) -> str:
    steps = ckpt.checkpoint_steps(config.output_dir)
    if not steps:
        return "no checkpoint was saved"
    return f"the last good checkpoint is kept: {config.output_dir / ckpt.CHECKPOINTS / f'step-{max(steps)}'}"


def _restore(checkpoint: ckpt.Checkpoint, config: TrainConfig, optimizer, scaler, device: torch.device,
             world: WorldInfo, data_sha256: str) -> TrainState:
    """The checkpoint's training state, with optimizer, scaler and this rank's RNG put back; warns (rank 0)
    when the checkpoint came from another number of processes or the training data changed since."""
    ranks = ckpt.restore_training(checkpoint, optimizer, scaler, device, world.rank)
    state = checkpoint.state
    warnings = []
    if ranks != world.size:
        warnings.append(f"the checkpoint was written by {ranks} process(es) and this run has {world.size}: data "
                        "order, schedule and optimizer carry on, but dropout draws differ from an uninterrupted run")
    if state.train_data_sha256 is not None and state.train_data_sha256 != data_sha256:
        warnings.append(f"the training data {config.train_data} changed since the checkpoint (its sha256 differs); "
                        "training goes on with the file as it is now")
    for warning in warnings if world.is_main else []:
        warn(f"resuming: {warning}")
    state.train_data_sha256 = data_sha256
    return state


def _cap_max_seq_length(config: TrainConfig, encoder: Encoder, tokenizer, main: bool) -> TrainConfig:
    """--max-seq-length, capped (with a warning) at what the model's position embeddings and tokenizer allow."""
    limit = usable_max_length(encoder, tokenizer, config.max_seq_length)
    if limit == config.max_seq_length:
        return config
    if main:
        warn(f"--max-seq-length {config.max_seq_length} is above the model's limit of {limit} tokens; using {limit}")
    return dataclasses.replace(config, max_seq_length=limit)


def _save_checkpoint(run: Run, state: TrainState) -> None:
    """Rank 0 writes (the model and optimizer are the same on every rank) with every rank's RNG state
    (each rank draws its own dropout masks); the others wait for it."""
    _require_finite_weights(run.encoder, state, run.config)
    blobs = distributed.gather_objects(ckpt.rng_states_to_bytes(ckpt.rng_states(run.runtime.device)), run.world)
    rng_by_rank = [ckpt.rng_states_from_bytes(blob) for blob in blobs]
    if run.world.is_main:
        ckpt.save_checkpoint(run.config.output_dir, state, run.encoder, run.tokenizer, run.optimizer, run.scaler,
                             run.config, rng_by_rank)
    distributed.barrier(run.world)


def _validate_and_keep(run: Run, state: TrainState, log, epoch: int) -> None:
    """Validate, log, keep best/ when the watched metric improved, and count towards early stopping."""
    config, main = run.config, run.world.is_main
    metric = config.selection_metric
    if metric is None:
        return
    # Every rank validates (no extra wall time); rank 0's figures decide, so best/ and early stopping agree.
    results = run_validation(run.encoder, run.tokenizer, run.val_data, run.eval_set, config, run.runtime,
                             run.tokenizer.pad_token_id or 0)
    results = distributed.broadcast_from_main(results, run.world)
    _log(log, {"step": state.step, "epoch": epoch, **results})
    if main:
        tqdm.write(f"step {state.step}: " + ", ".join(f"{k} {v:.4f}" for k, v in results.items()))
    if is_better(metric, results[metric], state.best_metric):
        state.best_metric, state.best_step, state.evals_without_improvement = results[metric], state.step, 0
        _require_finite_weights(run.encoder, state, config)
        if main:
            save_encoder(run.encoder, run.tokenizer, config.output_dir / "best", config.max_seq_length)
    else:
        state.evals_without_improvement += 1
        if config.early_stopping_patience and state.evals_without_improvement >= config.early_stopping_patience:
            state.stopped_early = True
            if main:
                tqdm.write(f"early stopping: {metric} did not improve in {state.evals_without_improvement} validations")


def _check_output_dir(config: TrainConfig) -> ckpt.Checkpoint | None:
    """Refuse to mix two runs in one directory; with --resume, the checkpoint to continue from."""
    if config.resume:
        return ckpt.load_checkpoint(ckpt.find_checkpoint(config.output_dir, config.resume))
    outputdir.check_run_output(config.output_dir, config.overwrite)
    return None


def _resume_config(config: TrainConfig, checkpoint: ckpt.Checkpoint, main: bool = True) -> TrainConfig:
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


@contextlib.contextmanager
def _metrics_log(run_dir: Path, resume_step: int) -> Iterator:
    """metrics.jsonl opened for appending; on resume, rows after the checkpoint's step are dropped first."""
    path = run_dir / "metrics.jsonl"
    if resume_step and path.is_file():
        rows = [line for line in path.read_text().splitlines() if _logged_step(line) <= resume_step]
        atomic_write_text(path, "".join(row + "\n" for row in rows))
    elif not resume_step:
        path.unlink(missing_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        yield handle


def _logged_step(line: str) -> float:
    """The step of a metrics.jsonl line; infinity for a line cut short by a kill, so resume drops it."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return math.inf


def _log(handle, row: dict) -> None:
    if handle is None:  # not rank 0
        return
    handle.write(json.dumps(row) + "\n")
    handle.flush()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
