"""The end of a training run: final/ saved (never from weights that are not finite), best/'s card redrawn with the
whole curve, averaged/ when asked, and the run's table; and the model card of a run's saved model."""

from __future__ import annotations

from pathlib import Path

import torch
from rich.console import Console

from ragtrain.config.train import TrainConfig
from ragtrain.errors import UserError
from ragtrain.files.atomic import atomic_write_text
from ragtrain.files.names import BEST, CARD, FINAL, METRICS_LOG
from ragtrain.messages import tell
from ragtrain.model.card import CardData, model_card, run_data, validation_rows
from ragtrain.model.encoder import Encoder
from ragtrain.model.runtime import peak_memory_mb
from ragtrain.model.saving import save_encoder
from ragtrain.model.world import barrier
from ragtrain.training import checkpoint as ckpt
from ragtrain.training.averaging import write_averaged
from ragtrain.training.checkpoint import TrainState
from ragtrain.training.setup import Run, run_record
from ragtrain.training.summary import base_model_note, training_table


def finish(run: Run, state: TrainState, rates: list[float], seconds: float) -> Path:
    """final/ (rank 0, never from weights that are not finite) and the run's table; every rank waits for final/."""
    require_finite_weights(run.encoder, state, run.config)
    final = run.config.output_dir / FINAL
    if run.world.is_main:
        save_encoder(run.encoder, final, run.config.lora_save, card=model_card_of(run, state, FINAL))
        if state.best_step is not None and (run.config.output_dir / BEST).is_dir():  # its card: the whole curve now
            atomic_write_text(run.config.output_dir / BEST / CARD, model_card_of(run, state, BEST))
        if run.config.average_last:
            averaged = write_averaged(run.config.output_dir, state.step, run.encoder, run.config.average_last)
            tell(f"averaged the last {run.config.average_last} checkpoints into {averaged}")
        Console().print(training_table(run.config, state, rates, seconds, run.total_steps,
                                       peak_memory_mb(run.runtime.device)))
    barrier(run.world)  # no rank returns before final/ is written
    return final


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
        name=str(config.output_dir / which), base_model=config.model, pooling=settings.pooling,
        normalize=settings.normalize, output_dim=run.encoder.output_dim, max_seq_length=settings.max_length,
        saved_as=saved_as,
        options=run_record(run), selection_metric=config.selection_metric,
        data=run_data(config.train_data, len(run.data), len(run.val_data) if run.val_data else None,
                      state.train_data_sha256),
        validation=validation_rows(config.output_dir / METRICS_LOG),
        query_prompt=settings.query_prompt, document_prompt=settings.document_prompt))


def require_finite_weights(encoder: Encoder, state: TrainState, config: TrainConfig) -> None:
    """Refuse to save a model whose weights are NaN or infinite (every rank holds the same weights)."""
    if bool(torch.stack([torch.isfinite(p).all() for p in encoder.parameters()]).all()):
        return
    raise UserError(f"training diverged: the weights are not finite after step {state.step}, so nothing more is "
                    f"saved; {ckpt.last_checkpoint_note(config.output_dir)}; lower --learning-rate and start again")
