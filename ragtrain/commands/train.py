"""train(config) -> path of the final model: the run's options checked, its processes and device, its directory
locked, then setup -> loop -> finish (the training wing). One process, or one rank of a torchrun job (then only
rank 0 writes and prints)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

from ragtrain.commands.preflight import check_train
from ragtrain.config.datakinds import defaults_line, with_kind_defaults
from ragtrain.config.train import TrainConfig
from ragtrain.data.manifest import read_data_kind
from ragtrain.model.runtime import (
    check_weights_dtype,
    resolve_device,
    resolve_precision,
    return_freed_memory_to_os,
    training_runtime,
)
from ragtrain.model.world import join_process_group, leave_process_group, world_from_env
from ragtrain.training.finish import finish
from ragtrain.training.loop import loop, run_log
from ragtrain.training.rundir import resume_config, resume_point, run_directory
from ragtrain.training.setup import setup


def train(config: TrainConfig, on_validation: Callable[[int, dict], bool] | None = None) -> Path:
    """Train and return final/. `on_validation(step, figures)`, if given, sees every validation (rank 0's figures,
    on every rank); when it returns True the run stops at that step as if stopped early: a checkpoint and final/
    are written (tune's pruning)."""
    kind = read_data_kind(config.train_data)  # once: which defaults the options left unset take
    config = with_kind_defaults(config, kind)
    config.validate()
    check_train(config)
    world = world_from_env()
    device = resolve_device(config.device, world.local_rank if world.is_distributed else None)
    resolve_precision(device, config.precision)  # fp16 on a CPU fails here, before any work
    check_weights_dtype(device, config.dtype)
    join_process_group(world, device)
    try:
        with run_directory(config.output_dir, world):
            resume_from = resume_point(config)
            if resume_from is not None:  # the checkpoint's options where they shape the run, its precision too
                config = resume_config(config, resume_from, world.is_main)
            if config.threads:
                torch.set_num_threads(config.threads)
            if device.type == "cpu":
                return_freed_memory_to_os()
            runtime = training_runtime(device, config.precision, config.dtype)
            notes = [line] if (line := defaults_line(config.defaulted, kind)) else []
            run, state = setup(config, world, runtime, resume_from, on_validation, tuple(notes))
            started = time.perf_counter()
            with run_log(run, state.step) as log:
                state, rates = loop(run, state, log)
            return finish(run, state, rates, time.perf_counter() - started)
    finally:
        leave_process_group(world)
