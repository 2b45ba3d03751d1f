"""train(config) -> path of the final model: set up, one straight loop over global batches, clean up.

The run directory holds config.json, metrics.jsonl, checkpoints/step-N/, best/ and final/.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from tqdm import tqdm

from ragtrain import checkpoint as ckpt
from ragtrain import distributed
from ragtrain.checkpoint import TrainState
from ragtrain.config import TrainConfig, as_dict
from ragtrain.data import TokenizedTriples, collate, epoch_batches, load_triples, micro_batches, tokenize_triples
from ragtrain.distributed import WorldInfo
from ragtrain.errors import UserError
from ragtrain.evaldata import dropped_message, load_eval_data
from ragtrain.fileio import atomic_write_json, atomic_write_text
from ragtrain.model import EncoderSpec, freeze_base, load_encoder, save_encoder
from ragtrain.optim import build_optimizer, learning_rates, lr_multiplier, set_learning_rates
from ragtrain.runtime import check_precision, grad_scaler, peak_memory_mb, resolve_device, return_freed_memory_to_os
from ragtrain.gradcache import enable_gradient_checkpointing
from ragtrain.step import step_directions, train_step
from ragtrain.summary import summary_table
from ragtrain.validation import is_better, run_validation

console = Console(stderr=True)


def train(config: TrainConfig) -> Path:
    """Train on one process, or as one rank of a torchrun job (then only rank 0 writes and prints)."""
    config.validate()
    world = distributed.world_from_env()
    device = resolve_device(config.device, world.local_rank if world.is_distributed else None)
    check_precision(device, config.mixed_precision, config.precision)
    distributed.setup(world, device)
    try:
        return _train(config, world, device)
    finally:
        distributed.cleanup(world)


def _train(config: TrainConfig, world: WorldInfo, device: torch.device) -> Path:
    main = world.is_main
    resume_from = _check_output_dir(config)
    if resume_from is not None:
        config = _resume_config(config, resume_from, main)
    if config.threads:
        torch.set_num_threads(config.threads)
    if device.type == "cpu":
        return_freed_memory_to_os()
    triples = load_triples(config.train_data)  # bad data fails before the (slow) model load
    val_triples = load_triples(config.val_data) if config.val_data else None
    eval_set = load_eval_data(config.eval_data, config.eval_split, "--eval-split") if config.eval_data else None
    if main and eval_set is not None and (message := dropped_message(eval_set, config.eval_data)):
        console.print(f"[yellow]warning:[/yellow] {message}", highlight=False, soft_wrap=True)
    seed_everything(config.seed)
    spec = EncoderSpec(config.pooling, config.normalize, config.output_dim)
    encoder, tokenizer = load_encoder(str(resume_from.model_dir) if resume_from else config.model, spec,
                                      attention_dropout=config.attention_dropout)
    if config.freeze_base:
        freeze_base(encoder)
    encoder.to(device).train()
    if config.gradient_checkpointing:
        enable_gradient_checkpointing(encoder)
    model = distributed.wrap_model(encoder, world, device)  # embed through DDP; `encoder` for saving and validation
    data = tokenize_triples(triples, tokenizer, config.max_seq_length)  # once, before the loop
    val_data = tokenize_triples(val_triples, tokenizer, config.max_seq_length) if val_triples else None
    steps_per_epoch = len(global_batches(data, config, 0, world))
    if steps_per_epoch == 0:
        raise UserError(f"--batch-size {config.batch_size} leaves no batch with a triple for each of the "
                        f"{world.size} processes; raise --batch-size")
    total_steps = steps_per_epoch * config.epochs
    warmup = config.warmup_steps if config.warmup_steps is not None else math.ceil(config.warmup_ratio * total_steps)
    optimizer = build_optimizer(encoder, config.weight_decay, config.base_lr, config.head_lr)
    scaler = grad_scaler(device, config.mixed_precision, config.precision)
    state = TrainState()
    if resume_from is not None:
        ckpt.restore_training(resume_from, optimizer, scaler, device)
        state = resume_from.state
    distributed.barrier(world)  # every rank has checked the output directory before rank 0 changes it
    if main and config.overwrite and config.output_dir.exists() and resume_from is None:
        shutil.rmtree(config.output_dir)  # only now: a failed setup leaves the old run untouched
    if main:
        console.print(f"device: {device}" + (" (auto: cuda, then mps, then cpu)" if config.device == "auto" else "")
                      + (f" x {world.size} processes" if world.is_distributed else "")
                      + f"; {len(data)} triples, {total_steps} steps, warmup {warmup}", highlight=False)
        atomic_write_json(config.output_dir / "config.json", as_dict(config) | {
            "device_resolved": str(device), "total_steps": total_steps, "warmup_steps_resolved": warmup,
            "world_size": world.size})
    started = time.perf_counter()
    rates: list[float] = []
    with _metrics_log(config.output_dir, state.step) if main else contextlib.nullcontext() as log:
        if state.step == 0:  # the base model first: the curve's origin, and best/ is never worse than it
            _validate_and_keep(encoder, tokenizer, val_data, eval_set, config, device, state, log, 0, world)
        for epoch in range(state.epoch, config.epochs):
            batches = global_batches(data, config, epoch, world)
            progress = tqdm(total=total_steps, initial=state.step, desc=f"epoch {epoch + 1}/{config.epochs}",
                            unit="step", disable=not main)
            for index in range(state.batch_in_epoch, len(batches)):
                tick = time.perf_counter()
                multiplier = lr_multiplier(state.step, warmup, total_steps, config.min_lr_ratio)
                set_learning_rates(optimizer, multiplier)
                pad_id = tokenizer.pad_token_id or 0
                global_parts = micro_batches(batches[index], config.grad_accum_steps)  # each rank: its slice of each
                parts = [collate(data, distributed.shard_batch(part, world), pad_id) for part in global_parts]
                result = train_step(model, optimizer, scaler, parts, config, device,
                                    step_directions(config, encoder, state.step, device), world, [len(p) for p in global_parts])
                seconds = time.perf_counter() - tick
                lrs = learning_rates(optimizer)
                state.step, state.batch_in_epoch = state.step + 1, index + 1
                state.skipped_steps += result.skipped
                rates.append(len(batches[index]) / seconds)
                progress.update(1)
                progress.set_postfix(loss=f"{result.parts['loss']:.4f}", lr=f"{next(iter(lrs.values())):.2e}",
                                     tps=f"{rates[-1]:.1f}")
                if state.step % config.log_steps == 0 or state.step == total_steps:
                    _log(log, {"step": state.step, "epoch": epoch, **lrs, **result.parts, "grad_norm": result.grad_norm,
                               "triples_per_s": rates[-1], "tokens_per_s": result.real_tokens / seconds,
                               "memory_mb": peak_memory_mb(device), "skipped_steps": state.skipped_steps})
                if config.eval_steps and state.step % config.eval_steps == 0:
                    _validate_and_keep(encoder, tokenizer, val_data, eval_set, config, device, state, log, epoch, world)
                if (config.save_steps and state.step % config.save_steps == 0) or (
                        config.eval_steps and state.step % config.eval_steps == 0):
                    _save_checkpoint(config, state, encoder, tokenizer, optimizer, scaler, world)
                if state.stopped_early:
                    break
            progress.close()
            if state.stopped_early:
                break
            state.epoch, state.batch_in_epoch = epoch + 1, 0
            if not (config.eval_steps and state.step % config.eval_steps == 0):  # not validated at this very step
                _validate_and_keep(encoder, tokenizer, val_data, eval_set, config, device, state, log, epoch, world)
            _save_checkpoint(config, state, encoder, tokenizer, optimizer, scaler, world)
    final = config.output_dir / "final"
    if main:
        save_encoder(encoder, tokenizer, final, config.max_seq_length)
        Console().print(summary_table(config, state, rates, time.perf_counter() - started, total_steps, peak_memory_mb(device)))
    distributed.barrier(world)  # no rank returns before final/ is written
    return final


def global_batches(data: TokenizedTriples, config: TrainConfig, epoch: int, world: WorldInfo) -> list[list[int]]:
    """The epoch's global batches (each rank trains on its slice of each); the same list on every rank."""
    batches = epoch_batches(data, config.batch_size, config.seed, epoch, config.group_by_length)
    return distributed.usable_batches(batches, world, config.grad_accum_steps)


def _save_checkpoint(config: TrainConfig, state: TrainState, encoder, tokenizer, optimizer, scaler, world: WorldInfo) -> None:
    """Rank 0 writes (the model and optimizer are the same on every rank); the others wait for it."""
    if world.is_main:
        ckpt.save_checkpoint(config.output_dir, state, encoder, tokenizer, optimizer, scaler, config)
    distributed.barrier(world)


def _validate_and_keep(encoder, tokenizer, val_data, eval_set, config: TrainConfig, device, state: TrainState, log, epoch: int,
                       world: WorldInfo = WorldInfo()) -> None:
    """Validate, log, keep best/ when the watched metric improved, and count towards early stopping."""
    metric = config.selection_metric
    if metric is None:
        return
    # Every rank validates (no extra wall time); rank 0's figures decide, so best/ and early stopping agree.
    results = run_validation(encoder, tokenizer, val_data, eval_set, config, device, tokenizer.pad_token_id or 0)
    results, main = distributed.broadcast_from_main(results, world), world.is_main
    _log(log, {"step": state.step, "epoch": epoch, **results})
    if main:
        tqdm.write(f"step {state.step}: " + ", ".join(f"{k} {v:.4f}" for k, v in results.items()))
    if is_better(metric, results[metric], state.best_metric):
        state.best_metric, state.best_step, state.evals_without_improvement = results[metric], state.step, 0
        if main:
            save_encoder(encoder, tokenizer, config.output_dir / "best", config.max_seq_length)
    else:
        state.evals_without_improvement += 1
        if config.early_stopping_patience and state.evals_without_improvement >= config.early_stopping_patience:
            state.stopped_early = True
            if main:
                tqdm.write(f"early stopping: {metric} did not improve in {state.evals_without_improvement} validations")


def _check_output_dir(config: TrainConfig) -> ckpt.Checkpoint | None:
    """Refuse to mix two runs in one directory; with --resume, the checkpoint to continue from."""
    out = config.output_dir
    if out.exists() and not out.is_dir():
        raise UserError(f"--output-dir {out} is a file; choose a directory")
    if config.resume:
        return ckpt.load_checkpoint(ckpt.find_checkpoint(out, config.resume))
    if out.is_dir() and any(out.iterdir()) and not config.overwrite:
        raise UserError(f"output directory {out} already holds a run; pass --resume to continue it, "
                        "--overwrite to replace it, or choose another --output-dir")
    return None


def _resume_config(config: TrainConfig, checkpoint: ckpt.Checkpoint, main: bool = True) -> TrainConfig:
    config, warnings = ckpt.reconcile_config(config, checkpoint.config)
    if not main:
        return config
    for warning in warnings:
        console.print(f"[yellow]warning:[/yellow] resuming: {warning}", highlight=False, soft_wrap=True)
    console.print(f"resuming from {checkpoint.path} (step {checkpoint.state.step})", highlight=False, soft_wrap=True)
    return config


@contextlib.contextmanager
def _metrics_log(run_dir: Path, resume_step: int) -> Iterator:
    """metrics.jsonl opened for appending; on resume, rows after the checkpoint's step are dropped first."""
    path = run_dir / "metrics.jsonl"
    if resume_step and path.is_file():
        rows = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= resume_step]
        atomic_write_text(path, "".join(row + "\n" for row in rows))
    elif not resume_step:
        path.unlink(missing_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        yield handle


def _log(handle, row: dict) -> None:
    if handle is None:  # not rank 0
        return
    handle.write(json.dumps(row) + "\n")
    handle.flush()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
