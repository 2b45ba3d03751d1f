"""The training loop: the base model validated first, then the epochs from where the state stands, each step
logged, validated, checkpointed and checked for a stop. The loop's position (step, epoch, best metric, ...) is a
TrainState that each part takes and returns; what stays fixed for the run is the Run (setup.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Iterator

from tqdm import tqdm

from ragtrain.data.triples import epoch_batches
from ragtrain.errors import UserError
from ragtrain.files.names import BEST
from ragtrain.model.runtime import peak_memory_mb
from ragtrain.model.saving import save_encoder
from ragtrain.model.world import barrier, broadcast_from_main, gather_objects
from ragtrain.training import checkpoint as ckpt
from ragtrain.training.checkpoint import TrainState
from ragtrain.training.diagnostics import diagnostics_postfix
from ragtrain.training.finish import model_card_of, require_finite_weights
from ragtrain.training.logwindow import EMPTY, add_step, log_interval, window_row
from ragtrain.training.optim import learning_rates, lr_multiplier, set_learning_rates
from ragtrain.training.runlog import RunLog, log_row, metrics_log
from ragtrain.training.setup import Run, run_record
from ragtrain.training.step import StepResult, step_batches, step_directions, train_step
from ragtrain.training.trackers import open_trackers
from ragtrain.training.validation import is_better, run_validation

MAX_SKIPPED_IN_A_ROW = 10  # steps in a row without a finite loss and gradient before the run stops


@contextlib.contextmanager
def run_log(run: Run, resume_step: int) -> Iterator[RunLog | None]:
    """Rank 0's metrics.jsonl and the --report-to trackers it feeds; nothing on the other ranks."""
    if not run.world.is_main:
        yield None
        return
    with open_trackers(run.config.report_to, run.config.output_dir, run_record(run), resume_step) as trackers, \
            metrics_log(run.config.output_dir, resume_step, trackers) as log:
        yield log


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
            state = _after_step(run, state, result, log, epoch + 1, seconds)
            validate = bool(config.eval_steps) and state.step % config.eval_steps == 0
            if validate:
                state = _validate_and_keep(run, state, log, epoch + 1)
            if validate or (config.save_steps and state.step % config.save_steps == 0):
                _save_checkpoint(run, state)
            if state.stopped_early:
                return state, rates
    state = dataclasses.replace(state, epoch=epoch + 1, batch_in_epoch=0)
    if not (config.eval_steps and state.step % config.eval_steps == 0):  # not validated at this very step
        state = _validate_and_keep(run, state, log, epoch + 1)
    _save_checkpoint(run, state)
    return state, rates


def _step(run: Run, state: TrainState, batch: list[int]) -> tuple[StepResult, float]:
    """One optimizer step on a global batch at the schedule's rate for `state.step`; its result and seconds."""
    config, tick = run.config, time.perf_counter()
    set_learning_rates(run.optimizer, lr_multiplier(state.step, run.warmup, run.total_steps, config.min_lr_ratio))
    parts = step_batches(run.data, batch, config, run.world, run.encoder.pad_id)
    directions = step_directions(config, run.encoder, state.step, run.runtime.device)
    result = train_step(run.model, run.optimizer, run.scaler, parts, config, run.runtime, run.loss, directions,
                        run.world)
    return result, time.perf_counter() - tick


def _after_step(run: Run, state: TrainState, result: StepResult, log: RunLog | None, epoch: int,
                seconds: float) -> TrainState:
    """The state one step on (a skipped step counted), its figures added to the log window and, every
    --log-steps, their means logged (`epoch` counts from 1, as the progress bar does); the run stops after
    MAX_SKIPPED_IN_A_ROW skipped steps in a row. An fp16 scaler's overflow of a finite loss is its calibration:
    skipped, not counted as diverged (finish.run_failure judges the share of diverged steps)."""
    calibrating = run.scaler.is_enabled() and math.isfinite(result.parts["loss"])
    window = add_step(state.log_window, {**result.parts, "grad_norm": result.grad_norm, "batch_size": result.triples,
                                         "masked_candidates": result.masked}, result.triples, result.real_tokens, seconds)
    state = dataclasses.replace(state, step=state.step + 1, batch_in_epoch=state.batch_in_epoch + 1,
                                skipped_steps=state.skipped_steps + result.skipped,
                                diverged_steps=state.diverged_steps + (result.skipped and not calibrating),
                                skipped_in_a_row=state.skipped_in_a_row + 1 if result.skipped else 0, log_window=window)
    stop = state.skipped_in_a_row >= MAX_SKIPPED_IN_A_ROW
    if state.step % log_interval(run.config.log_steps, run.total_steps) == 0 or state.step == run.total_steps or stop:
        log_row(log, {"step": state.step, "epoch": epoch, **learning_rates(run.optimizer), **window_row(window),
                      "memory_mb": peak_memory_mb(run.runtime.device), "skipped_steps": state.skipped_steps})
        state = dataclasses.replace(state, log_window=dict(EMPTY))
    if stop:
        raise UserError(f"training stopped at step {state.step}: the loss or the gradient was not finite in "
                        f"{state.skipped_in_a_row} steps in a row (each skipped, no update); "
                        f"{ckpt.last_checkpoint_note(run.config.output_dir)}; lower --learning-rate (or check the training data) and "
                        "start again")
    return state


def _validate_and_keep(run: Run, state: TrainState, log: RunLog | None, epoch: int) -> TrainState:
    """Validate and log (`epoch` counts from 1; 0 is the base model's validation, before the first); keep best/ when
    the watched metric improved; count towards early stopping."""
    config, main = run.config, run.world.is_main
    metric = config.selection_metric
    if metric is None:
        return state
    # Every rank validates (no extra wall time); rank 0's figures decide, so best/ and early stopping agree.
    results = run_validation(run.encoder, run.val_data, run.eval_set, run.loss, (config.batch_size, config.eval_batch_size),
                             config.seed, run.runtime)
    results = broadcast_from_main(results, run.world)
    log_row(log, {"step": state.step, "epoch": epoch, **results})
    if main:
        tqdm.write(f"step {state.step}: " + ", ".join(f"{k} {v:.4f}" for k, v in results.items()))
    state = dataclasses.replace(state, last_metric=results[metric],
                                first_metric=results[metric] if state.first_metric is None else state.first_metric)
    if run.on_validation is not None and run.on_validation(state.step, results):
        state = dataclasses.replace(state, stopped_early=True)
    if is_better(metric, results[metric], state.best_metric):
        state = dataclasses.replace(state, best_metric=results[metric], best_step=state.step,
                                    evals_without_improvement=0)
        require_finite_weights(run.encoder, state, config)
        if main:
            save_encoder(run.encoder, config.output_dir / BEST, config.lora_save, card=model_card_of(run, state, BEST))
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
    require_finite_weights(run.encoder, state, run.config)
    blobs = gather_objects(ckpt.rng_states_to_bytes(ckpt.rng_states(run.runtime.device)), run.world)
    rng_by_rank = [ckpt.rng_states_from_bytes(blob) for blob in blobs]
    if run.world.is_main:
        ckpt.save_checkpoint(run.config.output_dir, state, run.encoder, run.optimizer, run.scaler, run.config,
                             rng_by_rank)
    barrier(run.world)
