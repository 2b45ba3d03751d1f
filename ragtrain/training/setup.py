"""A training run set up: its data tokenised once, its model loaded (its text settings resolved once, held by the
encoder), its optimizer and schedule, the state to start or resume from, and its run directory made ready.
What stays fixed for the run is one frozen Run that the loop reads.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ragtrain.config.common import as_dict
from ragtrain.config.train import TrainConfig
from ragtrain.data.evaldata import EvalData, dropped_message, load_eval_data
from ragtrain.data.triples import TokenizedTriples, load_triples, require_distinct_passages, tokenize_triples
from ragtrain.files import outputdir
from ragtrain.files.atomic import atomic_write_json, file_sha256
from ragtrain.files.names import RUN_CONFIG
from ragtrain.messages import tell, warn
from ragtrain.model.encoder import Encoder, enable_gradient_checkpointing, freeze_base
from ragtrain.model.loading import load_encoder
from ragtrain.model.lora import ADAPTER_DIR, add_lora, load_adapter
from ragtrain.model.projection import load_dense_modules
from ragtrain.model.runtime import Runtime
from ragtrain.model.settings import describe
from ragtrain.model.world import WorldInfo, barrier
from ragtrain.training import checkpoint as ckpt
from ragtrain.training import distributed
from ragtrain.training.checkpoint import TrainState
from ragtrain.training.logwindow import log_interval
from ragtrain.training.loss import LossOptions
from ragtrain.training.optim import build_optimizer
from ragtrain.training.step import loss_options


@dataclass(frozen=True)
class Run:
    """What the loop reads, set up once: options, placement, model, optimizer and tokenised data."""

    config: TrainConfig
    world: WorldInfo
    runtime: Runtime  # device and precision
    encoder: Encoder  # for saving and validation; its settings say how it turns text into vectors
    model: nn.Module  # the encoder's embed, in DDP under torchrun: what the step calls
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    loss: LossOptions
    data: TokenizedTriples
    val_data: TokenizedTriples | None
    eval_set: EvalData | None
    total_steps: int
    warmup: int
    # called with (step, validation figures) after each validation; True stops the run there (tune's pruning)
    on_validation: Callable[[int, dict], bool] | None = None


def setup(config: TrainConfig, world: WorldInfo, runtime: Runtime, resume_from: ckpt.Checkpoint | None,
          on_validation: Callable[[int, dict], bool] | None = None, notes: tuple[str, ...] = ()) -> tuple[Run, TrainState]:
    """Data, model and optimizer, and the state to start or resume from; then the run directory made ready: an
    overwritten run cleared, `notes` said, config.json written. `config` is the one the run keeps (a resumed run's
    is the checkpoint's, reconciled by the command)."""
    triples = load_triples(config.train_data, config.loss == "distill")  # bad data fails before the (slow) model load
    val_triples = load_triples(config.val_data) if config.val_data else None
    eval_set = _load_eval_set(config, world.is_main)
    seed_everything(config.seed)
    encoder = _load_model(config, runtime, resume_from, world.is_main)
    model = distributed.wrap_model(encoder, world, runtime.device)  # before the optimizer: it freezes the pooler
    data = tokenize_triples(triples, encoder)  # once, before the loop
    require_distinct_passages(data, config.train_data)
    val_data = tokenize_triples(val_triples, encoder) if val_triples else None
    total_steps, warmup = _schedule(config, len(data), world.is_main)
    optimizer = build_optimizer(encoder, config.weight_decay, config.base_lr, config.head_lr)
    run = Run(config, world, runtime, encoder, model, optimizer, runtime.grad_scaler(),
              loss_options(config, encoder.settings), data, val_data, eval_set, total_steps, warmup, on_validation)
    data_sha256 = file_sha256(config.train_data)  # kept in every checkpoint, so resume sees a changed file
    state = _restore(run, resume_from, data_sha256) if resume_from else TrainState(train_data_sha256=data_sha256)
    _start_run_directory(run, resume_from is None, notes)
    return run, state


def _load_eval_set(config: TrainConfig, main: bool) -> EvalData | None:
    if config.eval_data is None:
        return None
    eval_set = load_eval_data(config.eval_data, config.eval_split, "--eval-split")
    if main and (message := dropped_message(eval_set, config.eval_data)):
        warn(message)
    return eval_set


def _load_model(config: TrainConfig, runtime: Runtime, resume_from: ckpt.Checkpoint | None, main: bool) -> Encoder:
    """The encoder to train (the checkpoint's on resume) on its device, in training mode, its text settings
    resolved from its own files with the flags over them (rank 0 says what it uses)."""
    lora_resume = resume_from is not None and config.lora_rank > 0  # the base model, then the checkpoint's adapter
    source = str(resume_from.model_dir) if resume_from and not lora_resume else config.model
    encoder = load_encoder(source, config.text_options(), dtype=runtime.weights_dtype,
                           attention_dropout=config.attention_dropout, quiet=not main)
    if config.lora_rank:
        _add_lora(encoder, config, resume_from)
    if main:
        tell(describe(encoder.settings, config.model))
    if config.freeze_base:
        freeze_base(encoder)
    encoder.to(runtime.device).train()
    if config.gradient_checkpointing:
        enable_gradient_checkpointing(encoder)
    return encoder


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


def _start_run_directory(run: Run, fresh: bool, notes: tuple[str, ...]) -> None:
    """Once every rank is set up: rank 0 clears an overwritten run (only now, so a failed setup leaves it
    untouched), says the notes and where the run goes, and writes config.json with every resolved option."""
    config, world, device = run.config, run.world, run.runtime.device
    barrier(world)  # every rank has checked the output directory before rank 0 changes it
    if not world.is_main:
        return
    if config.overwrite and fresh:
        outputdir.clear_run(config.output_dir)
    for note in notes:
        tell(note)
    tell(f"device: {device}" + (" (auto: cuda, then mps, then cpu)" if config.device == "auto" else "")
         + (f" x {world.size} processes" if world.is_distributed else "")
         + f"; {len(run.data)} triples, {run.total_steps} steps, warmup {run.warmup}")
    atomic_write_json(config.output_dir / RUN_CONFIG, run_record(run))


def run_record(run: Run) -> dict:
    """config.json: every option as given (or defaulted), and what the run resolved (config's RUN_RECORD_KEYS): its device,
    steps, processes, and the model's text settings. The invocation's --resume and --overwrite are left at their
    defaults, so `train --config RUN/config.json -o RUN2` repeats the run (resuming gives the same run as one
    uninterrupted)."""
    config, settings = dataclasses.replace(run.config, resume=None, overwrite=False), run.encoder.settings
    resolved = {"device_resolved": str(run.runtime.device), "total_steps": run.total_steps,
                "warmup_steps_resolved": run.warmup, "world_size": run.world.size,
                "log_steps_resolved": log_interval(config.log_steps, run.total_steps),
                "model_settings": {"pooling": settings.pooling, "normalize": settings.normalize,
                                   "max_seq_length": settings.max_length, "query_prompt": settings.query_prompt,
                                   "document_prompt": settings.document_prompt, "lower_case": settings.lower_case,
                                   "matryoshka_dims": list(settings.matryoshka_dims)}}
    return as_dict(config) | resolved


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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
