"""train(config) -> path of the final model: setup, one straight loop over global batches, finish.

The run directory holds config.json, metrics.jsonl, checkpoints/step-N/, best/ and final/, and while a run
is alive its lock file (runlock.py): one run per directory. The loop's position (step, epoch, best metric, ...)
is a TrainState that each part takes and returns; what stays fixed for the run is a Run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from torch import nn
from tqdm import tqdm

from ragtrain.config.commands import TrainConfig, as_dict
from ragtrain.config.datakinds import defaults_line
from ragtrain.data.evaldata import EvalData, dropped_message, load_eval_data
from ragtrain.data.triples import (
    TokenizedTriples,
    epoch_batches,
    load_triples,
    require_distinct_passages,
    tokenize_triples,
)
from ragtrain.errors import UserError
from ragtrain.files import outputdir
from ragtrain.files.atomic import atomic_write_json, atomic_write_text, file_sha256
from ragtrain.files.names import BEST, CARD, FINAL, METRICS_LOG, RUN_CONFIG
from ragtrain.messages import tell, warn
from ragtrain.model.card import CardData, model_card, run_data, validation_rows
from ragtrain.model.encoder import (
    Encoder,
    enable_gradient_checkpointing,
    freeze_base,
    load_encoder,
    save_encoder,
    usable_max_length,
)
from ragtrain.model.lora import ADAPTER_DIR, add_lora, load_adapter
from ragtrain.model.matryoshka import matryoshka_dims
from ragtrain.model.projection import load_dense_modules
from ragtrain.model.runtime import Runtime, peak_memory_mb, resolve_device, return_freed_memory_to_os, training_runtime
from ragtrain.model.textspec import DEFAULT_MAX_LENGTH, describe
from ragtrain.training import checkpoint as ckpt
from ragtrain.training import distributed
from ragtrain.training.averaging import write_averaged
from ragtrain.training.checkpoint import TrainState
from ragtrain.training.diagnostics import diagnostics_postfix
from ragtrain.training.distributed import WorldInfo
from ragtrain.training.optim import build_optimizer, learning_rates, lr_multiplier, set_learning_rates
from ragtrain.training.rundir import resume_config, resume_point, run_directory
from ragtrain.training.runlog import RunLog, log_row, metrics_log
from ragtrain.training.step import StepResult, step_batches, step_directions, train_step
from ragtrain.training.summary import base_model_note, training_table
from ragtrain.training.trackers import open_trackers
from ragtrain.training.validation import is_better, run_validation

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
    # called with (step, validation figures) after each validation; True stops the run there (tune's pruning)
    on_validation: Callable[[int, dict], bool] | None = None


def train(config: TrainConfig, on_validation: Callable[[int, dict], bool] | None = None) -> Path:
    """Train on one process, or as one rank of a torchrun job (then only rank 0 writes and prints).

    `on_validation(step, figures)`, if given, sees every validation (rank 0's figures, on every rank); when it
    returns True the run stops at that step as if stopped early: a checkpoint and final/ are written."""
    config.validate()
    world = distributed.world_from_env()
    device = resolve_device(config.device, world.local_rank if world.is_distributed else None)
    runtime = training_runtime(device, config.mixed_precision, config.precision, config.dtype)  # fp16 on a CPU fails here
    distributed.setup(world, runtime.device)
    try:
        with run_directory(config.output_dir, world):
            run, state = setup(config, world, runtime)
            run = dataclasses.replace(run, on_validation=on_validation)
            started = time.perf_counter()
            with _run_log(run, state.step) as log:
                state, rates = loop(run, state, log)
            return finish(run, state, rates, time.perf_counter() - started)
    finally:
        distributed.cleanup(world)


@contextlib.contextmanager
def _run_log(run: Run, resume_step: int) -> Iterator[RunLog | None]:
    """Rank 0's metrics.jsonl and the --report-to trackers it feeds; nothing on the other ranks."""
    if not run.world.is_main:
        yield None
        return
    with open_trackers(run.config.report_to, run.config.output_dir, run_record(run), resume_step) as trackers, \
            metrics_log(run.config.output_dir, resume_step, trackers) as log:
        yield log


# ------------------------------------------------------------------------------------------------------ setup
def setup(config: TrainConfig, world: WorldInfo, runtime: Runtime) -> tuple[Run, TrainState]:
    """Options (the checkpoint's where they shape the run), data, model and optimizer, and the state to start or
    resume from; then the run directory made ready: an overwritten run cleared, config.json written."""
    resume_from = resume_point(config)
    if resume_from is not None:
        config = resume_config(config, resume_from, world.is_main)
        # the checkpoint's precision, which the run keeps, on this run's device
        runtime = training_runtime(runtime.device, config.mixed_precision, config.precision, config.dtype)
    if config.threads:
        torch.set_num_threads(config.threads)
    if runtime.device.type == "cpu":
        return_freed_memory_to_os()
    triples = load_triples(config.train_data, config.loss == "distill")  # bad data fails before the (slow) model load
    val_triples = load_triples(config.val_data) if config.val_data else None
    eval_set = _load_eval_set(config, world.is_main)
    seed_everything(config.seed)
    encoder, tokenizer, config = _load_model(config, runtime, resume_from, world.is_main)
    model = distributed.wrap_model(encoder, world, runtime.device)  # before the optimizer: it freezes the pooler
    prompts = (config.query_prompt or "", config.document_prompt or "")  # the model's own, or the flags', resolved
    data = tokenize_triples(triples, tokenizer, config.max_seq_length, *prompts)  # once, before the loop
    require_distinct_passages(data, config.train_data, config.max_seq_length)
    val_data = tokenize_triples(val_triples, tokenizer, config.max_seq_length, *prompts) if val_triples else None
    total_steps, warmup = _schedule(config, len(data), world.is_main)
    optimizer = build_optimizer(encoder, config.weight_decay, config.base_lr, config.head_lr)
    run = Run(config, world, runtime, encoder, tokenizer, model, optimizer, runtime.grad_scaler(), data, val_data,
              eval_set, total_steps, warmup)
    data_sha256 = file_sha256(config.train_data)  # kept in every checkpoint, so resume sees a changed file
    state = _restore(run, resume_from, data_sha256) if resume_from else TrainState(train_data_sha256=data_sha256)
    _start_run_directory(run, fresh=resume_from is None)
    return run, state


def _load_eval_set(config: TrainConfig, main: bool) -> EvalData | None:
    if config.eval_data is None:
        return None
    eval_set = load_eval_data(config.eval_data, config.eval_split, "--eval-split")
    if main and (message := dropped_message(eval_set, config.eval_data)):
        warn(message)
    return eval_set


def _load_model(config: TrainConfig, runtime: Runtime, resume_from: ckpt.Checkpoint | None,
                 main: bool) -> tuple[Encoder, object, TrainConfig]:
    """The encoder to train (the checkpoint's on resume) on its device, in training mode; its tokenizer; and the
    config with what the model's own files gave for the options left unset (pooling, normalisation, length,
    prompts), --max-seq-length capped at what the model allows, and the Matryoshka dimensions completed."""
    flags = {"pooling": config.pooling, "normalize": config.normalize, "max_seq_length": config.max_seq_length,
             "query_prompt": config.query_prompt, "document_prompt": config.document_prompt,
             "matryoshka_dims": config.matryoshka_dims}
    lora_resume = resume_from is not None and config.lora_rank > 0  # the base model, then the checkpoint's adapter
    encoder, tokenizer = load_encoder(str(resume_from.model_dir) if resume_from and not lora_resume else config.model,
                                      attention_dropout=config.attention_dropout, flags=flags,
                                      dtype=runtime.weights_dtype, output_dim=config.output_dim)
    if config.lora_rank:
        _add_lora(encoder, config, resume_from)
    text = encoder.text
    dims = matryoshka_dims(text.matryoshka_dims, encoder.output_size, config.model)
    encoder.text = dataclasses.replace(text, matryoshka_dims=dims)
    config = dataclasses.replace(config, pooling=text.pooling, normalize=text.normalize,
                                 max_seq_length=config.max_seq_length or text.max_seq_length or DEFAULT_MAX_LENGTH,
                                 query_prompt=text.query_prompt, document_prompt=text.document_prompt,
                                 matryoshka_dims=dims)
    config = _cap_max_seq_length(config, encoder, tokenizer, main)
    if main:
        tell(describe(encoder.text, config.model, config.max_seq_length))
    if config.freeze_base:
        freeze_base(encoder)
    encoder.to(runtime.device).train()
    if config.gradient_checkpointing:
        enable_gradient_checkpointing(encoder)
    return encoder, tokenizer, config


def _add_lora(encoder: Encoder, config: TrainConfig, resume_from: ckpt.Checkpoint | None) -> None:
    """Fresh LoRA adapters on the transformer, or on resume the checkpoint's adapter and head put back."""
    if resume_from is None:
        encoder.transformer = add_lora(encoder.transformer, config.lora_rank, config.lora_alpha, config.lora_dropout,
                                       config.lora_target_modules)
        return
    encoder.transformer = load_adapter(encoder.transformer, resume_from.path / ADAPTER_DIR, trainable=True)
    if encoder.projection is not None:  # the head trains in full: its weights are the checkpoint's
        encoder.projection = load_dense_modules(resume_from.model_dir)


def _schedule(config: TrainConfig, triples: int, main: bool) -> tuple[int, int]:
    """(total steps, warmup steps): every epoch has as many batches, ceil(triples / batch size)."""
    total_steps = math.ceil(triples / config.batch_size) * config.epochs
    warmup = config.warmup_steps if config.warmup_steps is not None else math.ceil(config.warmup_ratio * total_steps)
    if main and warmup > total_steps:
        warn(f"--warmup-steps {warmup} is more than the run's {total_steps} steps: the learning rate never "
             "reaches its peak; lower --warmup-steps")
    return total_steps, warmup


def _start_run_directory(run: Run, fresh: bool) -> None:
    """Once every rank is set up: rank 0 clears an overwritten run (only now, so a failed setup leaves it
    untouched), says where the run goes, and writes config.json with every resolved option."""
    config, world, device = run.config, run.world, run.runtime.device
    distributed.barrier(world)  # every rank has checked the output directory before rank 0 changes it
    if not world.is_main:
        return
    if config.overwrite and fresh:
        outputdir.clear_run(config.output_dir)
    if line := defaults_line(config.defaulted, config.train_data):  # which set the unset options took
        tell(line)
    tell(f"device: {device}" + (" (auto: cuda, then mps, then cpu)" if config.device == "auto" else "")
         + (f" x {world.size} processes" if world.is_distributed else "")
         + f"; {len(run.data)} triples, {run.total_steps} steps, warmup {run.warmup}")
    atomic_write_json(config.output_dir / RUN_CONFIG, run_record(run))


def run_record(run: Run) -> dict:
    """config.json: every option as the run resolved it, and what it resolved them to (RUN_RECORD_KEYS). The
    invocation's --resume and --overwrite are left at their defaults, so `train --config RUN/config.json -o RUN2`
    repeats the run (resuming gives the same run as one uninterrupted)."""
    config = dataclasses.replace(run.config, resume=None, overwrite=False)
    return as_dict(config) | {"device_resolved": str(run.runtime.device), "total_steps": run.total_steps,
                              "warmup_steps_resolved": run.warmup, "world_size": run.world.size}


# ------------------------------------------------------------------------------------------------------- loop
def loop(run: Run, state: TrainState, log: RunLog | None) -> tuple[TrainState, list[float]]:
    """The base model validated first (the curve's origin, and best/ is never worse than it), then the epochs
    from where `state` stands. The state at the end, and each step's triples/s."""
    if state.step == 0:
        state = _validate_and_keep(run, state, log, epoch=0)
    rates: list[float] = []
    for epoch in range(state.epoch, run.config.epochs):
        if state.stopped_early:  # decided at the previous epoch's end, or before the checkpoint was written
            break
        state, epoch_rates = _epoch(run, state, log, epoch)
        rates += epoch_rates
    return state, rates


def _epoch(run: Run, state: TrainState, log: RunLog | None, epoch: int) -> tuple[TrainState, list[float]]:
    """One epoch's steps from `state.batch_in_epoch` on, with their logs, validations, checkpoints and early stop;
    at its end (unless stopped early) a validation and a checkpoint."""
    config, rates = run.config, []
    batches = epoch_batches(run.data, config.batch_size, config.seed, epoch, config.group_by_length)
    with tqdm(total=run.total_steps, initial=state.step, desc=f"epoch {epoch + 1}/{config.epochs}", unit="step",
              disable=not run.world.is_main) as progress:  # closed on an error too: its line ends before the error's
        for index in range(state.batch_in_epoch, len(batches)):
            result, seconds = _step(run, state, batches[index])
            rates.append(result.triples / seconds)
            progress.update(1)
            progress.set_postfix(loss=f"{result.parts['loss']:.4f}", tps=f"{rates[-1]:.1f}",
                                 lr=f"{next(iter(learning_rates(run.optimizer).values())):.2e}",
                                 **diagnostics_postfix(result.parts))
            state = _after_step(run, state, result, log, epoch, seconds)
            validate = bool(config.eval_steps) and state.step % config.eval_steps == 0
            if validate:
                state = _validate_and_keep(run, state, log, epoch)
            if validate or (config.save_steps and state.step % config.save_steps == 0):
                _save_checkpoint(run, state)
            if state.stopped_early:
                return state, rates
    state = dataclasses.replace(state, epoch=epoch + 1, batch_in_epoch=0)
    if not (config.eval_steps and state.step % config.eval_steps == 0):  # not validated at this very step
        state = _validate_and_keep(run, state, log, epoch)
    _save_checkpoint(run, state)
    return state, rates


def _step(run: Run, state: TrainState, batch: list[int]) -> tuple[StepResult, float]:
    """One optimizer step on a global batch at the schedule's rate for `state.step`; its result and seconds."""
    config, tick = run.config, time.perf_counter()
    set_learning_rates(run.optimizer, lr_multiplier(state.step, run.warmup, run.total_steps, config.min_lr_ratio))
    parts = step_batches(run.data, batch, config, run.world, run.tokenizer.pad_token_id or 0)
    directions = step_directions(config, run.encoder, state.step, run.runtime.device)
    result = train_step(run.model, run.optimizer, run.scaler, parts, config, run.runtime, directions, run.world)
    return result, time.perf_counter() - tick


def _after_step(run: Run, state: TrainState, result: StepResult, log: RunLog | None, epoch: int,
                seconds: float) -> TrainState:
    """The state one step on (a skipped step counted), logged; the run stops after MAX_SKIPPED_IN_A_ROW skipped
    steps in a row."""
    state = dataclasses.replace(state, step=state.step + 1, batch_in_epoch=state.batch_in_epoch + 1,
                                skipped_steps=state.skipped_steps + result.skipped,
                                skipped_in_a_row=state.skipped_in_a_row + 1 if result.skipped else 0)
    stop = state.skipped_in_a_row >= MAX_SKIPPED_IN_A_ROW
    if state.step % run.config.log_steps == 0 or state.step == run.total_steps or stop:
        log_row(log, {"step": state.step, "epoch": epoch, **learning_rates(run.optimizer), **result.parts,
                      "grad_norm": result.grad_norm, "batch_size": result.triples, "masked_candidates": result.masked,
                      "triples_per_s": result.triples / seconds, "tokens_per_s": result.real_tokens / seconds,
                      "memory_mb": peak_memory_mb(run.runtime.device), "skipped_steps": state.skipped_steps})
    if stop:
        raise UserError(f"training stopped at step {state.step}: the loss or the gradient was not finite in "
                        f"{state.skipped_in_a_row} steps in a row (each skipped, no update); "
                        f"{ckpt.last_checkpoint_note(run.config.output_dir)}; lower --learning-rate (or check the training data) and "
                        "start again")
    return state


def _validate_and_keep(run: Run, state: TrainState, log: RunLog | None, epoch: int) -> TrainState:
    """Validate and log; keep best/ when the watched metric improved; count towards early stopping."""
    config, main = run.config, run.world.is_main
    metric = config.selection_metric
    if metric is None:
        return state
    # Every rank validates (no extra wall time); rank 0's figures decide, so best/ and early stopping agree.
    results = run_validation(run.encoder, run.tokenizer, run.val_data, run.eval_set, config, run.runtime,
                             run.tokenizer.pad_token_id or 0)
    results = distributed.broadcast_from_main(results, run.world)
    log_row(log, {"step": state.step, "epoch": epoch, **results})
    if main:
        tqdm.write(f"step {state.step}: " + ", ".join(f"{k} {v:.4f}" for k, v in results.items()))
    if run.on_validation is not None and run.on_validation(state.step, results):
        state = dataclasses.replace(state, stopped_early=True)
    if is_better(metric, results[metric], state.best_metric):
        state = dataclasses.replace(state, best_metric=results[metric], best_step=state.step,
                                    evals_without_improvement=0)
        _require_finite_weights(run.encoder, state, config)
        if main:
            save_encoder(run.encoder, run.tokenizer, config.output_dir / BEST, config.max_seq_length, config.lora_save,
                         card=_model_card(run, state, "best"))
        return state
    state = dataclasses.replace(state, evals_without_improvement=state.evals_without_improvement + 1)
    if config.early_stopping_patience and state.evals_without_improvement >= config.early_stopping_patience:
        state = dataclasses.replace(state, stopped_early=True)
        if main:
            tqdm.write(f"early stopping: {metric} did not improve in {state.evals_without_improvement} validations")
    return state


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


# ----------------------------------------------------------------------------------------------------- finish
def finish(run: Run, state: TrainState, rates: list[float], seconds: float) -> Path:
    """final/ (rank 0, never from weights that are not finite) and the run's table; every rank waits for final/."""
    _require_finite_weights(run.encoder, state, run.config)
    final = run.config.output_dir / FINAL
    if run.world.is_main:
        save_encoder(run.encoder, run.tokenizer, final, run.config.max_seq_length, run.config.lora_save,
                     card=_model_card(run, state, "final"))
        if state.best_step is not None and (run.config.output_dir / BEST).is_dir():  # its card: the whole curve now
            atomic_write_text(run.config.output_dir / BEST / CARD, _model_card(run, state, "best"))
        if run.config.average_last:
            tell(f"averaged the last {run.config.average_last} checkpoints into "
                 f"{write_averaged(run.config.output_dir, state.step, run.encoder, run.tokenizer, run.config.average_last, run.config.max_seq_length)}")
        Console().print(training_table(run.config, state, rates, seconds, run.total_steps,
                                       peak_memory_mb(run.runtime.device)))
    distributed.barrier(run.world)  # no rank returns before final/ is written
    return final


def _model_card(run: Run, state: TrainState, which: str) -> str:
    """best/'s or final/'s README.md: the base model, data, options, the validation curve so far, how to load it."""
    config, spec = run.config, run.encoder.spec
    if which == "best":
        saved_as = (f"the run's best model: the best {config.selection_metric} on validation, at step {state.best_step}"
                    + (base_model_note(config) if state.best_step == 0 else ""))
    else:
        saved_as = f"the model after the run's last step ({state.step} of {run.total_steps}" + (
            ", stopped early)" if state.stopped_early else ")")
    return model_card(CardData(
        name=str(config.output_dir / which), base_model=config.model, pooling=spec.pooling, normalize=spec.normalize,
        output_dim=spec.output_dim, max_seq_length=config.max_seq_length, saved_as=saved_as,
        options=run_record(run), selection_metric=config.selection_metric,
        data=run_data(config.train_data, len(run.data), len(run.val_data) if run.val_data else None,
                      state.train_data_sha256),
        validation=validation_rows(config.output_dir / METRICS_LOG),
        query_prompt=run.encoder.text.query_prompt, document_prompt=run.encoder.text.document_prompt))


def _restore(run: Run, checkpoint: ckpt.Checkpoint, data_sha256: str) -> TrainState:
    """The checkpoint's training state, with optimizer, scaler and this rank's RNG put back; warns (rank 0)
    when the checkpoint came from another number of processes or the training data changed since."""
    world = run.world
    ranks = ckpt.restore_training(checkpoint, run.optimizer, run.scaler, run.runtime.device, world.rank)
    state = checkpoint.state
    warnings = []
    if ranks != world.size:
        warnings.append(f"the checkpoint was written by {ranks} process(es) and this run has {world.size}: data "
                        "order, schedule and optimizer carry on, but dropout draws differ from an uninterrupted run")
    if state.train_data_sha256 is not None and state.train_data_sha256 != data_sha256:
        warnings.append(f"the training data {run.config.train_data} changed since the checkpoint (its sha256 "
                        "differs); training goes on with the file as it is now")
    for warning in warnings if world.is_main else []:
        warn(f"resuming: {warning}")
    return dataclasses.replace(state, train_data_sha256=data_sha256)


# ------------------------------------------------------------------------------------------ checks and seeds
def _cap_max_seq_length(config: TrainConfig, encoder: Encoder, tokenizer, main: bool) -> TrainConfig:
    """--max-seq-length, capped (with a warning) at what the model's position embeddings and tokenizer allow."""
    limit = usable_max_length(encoder, tokenizer, config.max_seq_length)
    if limit == config.max_seq_length:
        return config
    if main:
        warn(f"--max-seq-length {config.max_seq_length} is above the model's limit of {limit} tokens; using {limit}")
    return dataclasses.replace(config, max_seq_length=limit)


def _require_finite_weights(encoder: Encoder, state: TrainState, config: TrainConfig) -> None:
    """Refuse to save a model whose weights are NaN or infinite (every rank holds the same weights)."""
    if bool(torch.stack([torch.isfinite(p).all() for p in encoder.parameters()]).all()):
        return
    raise UserError(f"training diverged: the weights are not finite after step {state.step}, so nothing more is "
                    f"saved; {ckpt.last_checkpoint_note(config.output_dir)}; lower --learning-rate and start again")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
