"""The end of a training run: final/ saved (never from weights that are not finite), best/'s card redrawn with the
whole curve, averaged/ when asked, and the run's table; and the model card of a run's saved model.

A run that reached its last step may still have failed, and then says so instead of saving final/ (run_failure):
when more than MAX_DIVERGED_SHARE of its steps were skipped as non-finite (in a run of fewer than 10 steps, any
one: the update that did happen came from a model that had just diverged), or when its watched retrieval metric
ended below COLLAPSED_SHARE of where it started at step 0 (or the validation loss ended non-finite). Its weights may
be finite and still useless: a learning rate of 1e30 leaves finite weights 1e30 off, and nDCG@10 at 0.0."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from rich.console import Console

from ragtrain.config.train import TrainConfig
from ragtrain.data.counts import counts_in_words
from ragtrain.errors import UserError
from ragtrain.files.atomic import atomic_write_text
from ragtrain.files.names import BEST, CARD, FINAL, METRICS_LOG
from ragtrain.messages import tell
from ragtrain.model.card import (
    CardData,
    base_model_license,
    model_card,
    run_data,
    training_data_names,
    validation_rows,
)
from ragtrain.model.encoder import Encoder
from ragtrain.model.loading import resolve_model_dir
from ragtrain.model.runtime import peak_memory_mb
from ragtrain.model.saving import save_encoder
from ragtrain.model.world import barrier
from ragtrain.training import checkpoint as ckpt
from ragtrain.training.averaging import write_averaged
from ragtrain.training.checkpoint import TrainState
from ragtrain.training.setup import Run, run_record
from ragtrain.training.summary import base_model_note, training_table

MAX_DIVERGED_SHARE = 0.1  # of a run's steps that may be skipped as non-finite before the run counts as failed
COLLAPSED_SHARE = 0.1  # a retrieval metric that ends below this share of its step-0 value has collapsed


def finish(run: Run, state: TrainState, rates: list[float], seconds: float) -> Path:
    """final/ (rank 0, never from weights that are not finite) and the run's table; every rank waits for final/.
    A failed run (run_failure) writes no final/ and ends in one line saying why and what it kept."""
    require_finite_weights(run.encoder, state, run.config)
    final, failure = run.config.output_dir / FINAL, run_failure(run.config, state)
    if run.world.is_main:
        if failure is None:
            save_encoder(run.encoder, final, run.config.lora_save, card=model_card_of(run, state, FINAL))
        if state.best_step is not None and (run.config.output_dir / BEST).is_dir():  # its card: the whole curve now
            atomic_write_text(run.config.output_dir / BEST / CARD, model_card_of(run, state, BEST))
        if run.config.average_last and failure is None:
            averaged = write_averaged(run.config.output_dir, state.step, run.encoder, run.config.average_last)
            tell(f"averaged the last {run.config.average_last} checkpoints into {averaged}")
        Console().print(training_table(run.config, state, rates, seconds, run.total_steps,
                                       peak_memory_mb(run.runtime.device), failed=failure is not None))
    barrier(run.world)  # no rank returns before final/ is written
    if failure is not None:
        raise UserError(f"training failed: {failure}; final/ was not written; kept: {_kept(run.config, state)}; "
                        "lower --learning-rate (or check the training data) and start again")
    return final


def run_failure(config: TrainConfig, state: TrainState) -> str | None:
    """Why a run that reached its end did not train a usable model, or None: too many diverged steps, or a
    watched metric that collapsed (module docstring)."""
    if state.step and state.diverged_steps > MAX_DIVERGED_SHARE * state.step:
        return (f"{state.diverged_steps} of {state.step} steps were skipped because the loss or the gradient was not "
                f"finite (more than {MAX_DIVERGED_SHARE:.0%} of a run's steps), so the weights left are not trained")
    metric, first, last = config.selection_metric, state.first_metric, state.last_metric
    if metric == "val_loss" and last is not None and not math.isfinite(last):
        return f"the validation loss ended at {last} (not finite)"
    if metric != "val_loss" and first and last is not None and not last >= COLLAPSED_SHARE * first:
        return (f"the validation {metric} fell from {first:.4f} at the first validation to {last:.4f} at the last "
                f"(below {COLLAPSED_SHARE:.0%} of where it started): the model collapsed")
    return None


def _kept(config: TrainConfig, state: TrainState) -> str:
    """What a failed run leaves behind: best/ (which step, how good) and its checkpoints."""
    best = config.output_dir / BEST
    if state.best_step is not None and best.is_dir():
        base = " (the base model)" if state.best_step == 0 else ""
        kept = f"{best} from step {state.best_step}{base}, {config.selection_metric} {state.best_metric:.4f}"
    else:
        kept = "no best/"
    return f"{kept}; {ckpt.last_checkpoint_note(config.output_dir).replace('the last good checkpoint is kept: ', 'the last checkpoint ')}"


def model_card_of(run: Run, state: TrainState, which: str) -> str:
    """best/'s or final/'s README.md: the base model, data, options, the validation curve so far, how to load it."""
    config, settings = run.config, run.encoder.settings
    if which == BEST:
        saved_as = (f"the run's best model: the best {config.selection_metric} on validation, at step {state.best_step}"
                    + (base_model_note(config) if state.best_step == 0 else ""))
    else:
        saved_as = f"the model after the run's last step ({state.step} of {run.total_steps}" + (
            ", stopped early)" if state.stopped_early else ")")
    return model_card(CardData(
        # named by its folders, not by the path from wherever train ran: checkpoints/run/best is run/best
        name=f"{config.output_dir.resolve().name}/{which}", base_model=config.model, pooling=settings.pooling,
        normalize=settings.normalize, output_dim=run.encoder.output_dim, max_seq_length=settings.max_length,
        saved_as=saved_as,
        options=run_record(run), selection_metric=config.selection_metric,
        data=run_data(config.train_data, len(run.data), len(run.val_data) if run.val_data else None,
                      state.train_data_sha256, counts_in_words),
        validation=validation_rows(config.output_dir / METRICS_LOG),
        query_prompt=settings.query_prompt, document_prompt=settings.document_prompt,
        license=base_model_license(resolve_model_dir(config.model)), datasets=training_data_names(config.train_data),
        validation_precision=run.runtime.encode_precision))


def require_finite_weights(encoder: Encoder, state: TrainState, config: TrainConfig) -> None:
    """Refuse to save a model whose weights are NaN or infinite (every rank holds the same weights)."""
    if bool(torch.stack([torch.isfinite(p).all() for p in encoder.parameters()]).all()):
        return
    raise UserError(f"training diverged: the weights are not finite after step {state.step}, so nothing more is "
                    f"saved; {ckpt.last_checkpoint_note(config.output_dir)}; lower --learning-rate and start again")
