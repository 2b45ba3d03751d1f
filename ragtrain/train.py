"""train(config) -> path of the final model: one readable contrastive training loop."""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ragtrain.config import TrainConfig, as_dict
from ragtrain.data import TokenizedTriples, collate, epoch_batches, load_triples, tokenize_triples
from ragtrain.errors import UserError
from ragtrain.fileio import atomic_write_json
from ragtrain.loss import info_nce
from ragtrain.model import Encoder, EncoderSpec, load_encoder, save_encoder
from ragtrain.optim import build_optimizer, lr_multiplier, set_learning_rates
from ragtrain.runtime import autocast, check_precision, resolve_device

LOG_EVERY = 10


@dataclass
class TrainState:
    step: int = 0
    epoch: int = 0
    last_loss: float = float("nan")


def train(config: TrainConfig) -> Path:
    config.validate()
    device = resolve_device(config.device)
    check_precision(device, config.mixed_precision, config.precision)
    _check_output_dir(config)
    seed_everything(config.seed)
    triples = load_triples(config.train_data)  # bad data fails before the (slow) model load
    val_triples = load_triples(config.val_data) if config.val_data else None
    encoder, tokenizer = load_encoder(config.model, EncoderSpec())
    encoder.to(device)
    data = tokenize_triples(triples, tokenizer, config.max_seq_length)
    val_data = tokenize_triples(val_triples, tokenizer, config.max_seq_length) if val_triples else None
    schedule = [epoch_batches(data, config.batch_size, config.seed, e) for e in range(config.epochs)]
    total_steps = sum(len(b) for b in schedule)
    warmup_steps = math.ceil(config.warmup_ratio * total_steps)
    optimizer = build_optimizer(encoder, config.weight_decay, config.learning_rate)
    config.output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(config.output_dir / "config.json", as_dict(config) | {"device": str(device), "total_steps": total_steps})
    state = TrainState()
    pad_id = tokenizer.pad_token_id or 0
    progress = tqdm(total=total_steps, desc="training", unit="step")
    with (config.output_dir / "metrics.jsonl").open("w", encoding="utf-8") as log:
        for state.epoch, batches in enumerate(schedule):
            encoder.train()
            for batch in batches:
                started = time.perf_counter()
                multiplier = lr_multiplier(state.step, warmup_steps, total_steps, config.min_lr_ratio)
                set_learning_rates(optimizer, multiplier)
                loss, grad_norm = train_step(encoder, optimizer, collate(data, batch, pad_id), config, device)
                state.step += 1
                state.last_loss = loss
                rate = len(batch) / (time.perf_counter() - started)
                progress.update(1)
                progress.set_postfix(loss=f"{loss:.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}", tps=f"{rate:.1f}")
                if state.step % LOG_EVERY == 0 or state.step == total_steps:
                    log.write(json.dumps({"step": state.step, "epoch": state.epoch, "loss": loss, "grad_norm": grad_norm,
                                          "lr": optimizer.param_groups[0]["lr"], "triples_per_s": rate}) + "\n")
                    log.flush()
            if val_data is not None:
                val_loss = validation_loss(encoder, val_data, config, device, pad_id)
                log.write(json.dumps({"step": state.step, "epoch": state.epoch, "val_loss": val_loss}) + "\n")
                tqdm.write(f"epoch {state.epoch + 1}: validation loss {val_loss:.4f}")
    progress.close()
    final = config.output_dir / "final"
    save_encoder(encoder.cpu(), tokenizer, final, config.max_seq_length)
    return final


def train_step(encoder: Encoder, optimizer, batch, config: TrainConfig, device: torch.device) -> tuple[float, float]:
    queries, docs = ({k: v.to(device) for k, v in part.items()} for part in batch)
    with autocast(device, config.mixed_precision, config.precision):
        query_emb = encoder(**queries)  # (B, D)
        doc_emb = encoder(**docs)  # (B + N, D)
    loss = info_nce(query_emb.float(), doc_emb.float(), config.temperature)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    max_norm = config.max_grad_norm if config.max_grad_norm > 0 else float("inf")
    grad_norm = torch.nn.utils.clip_grad_norm_(encoder.parameters(), max_norm)
    optimizer.step()
    return loss.item(), float(grad_norm)


@torch.no_grad()
def validation_loss(encoder: Encoder, data: TokenizedTriples, config: TrainConfig, device, pad_id: int) -> float:
    encoder.eval()
    losses = []
    for batch in epoch_batches(data, config.batch_size, config.seed, epoch=0):
        if len(batch) < 2:
            continue
        queries, docs = ({k: v.to(device) for k, v in part.items()} for part in collate(data, batch, pad_id))
        with autocast(device, config.mixed_precision, config.precision):
            loss = info_nce(encoder(**queries).float(), encoder(**docs).float(), config.temperature)
        losses.append(loss.item())
    encoder.train()
    return float(np.mean(losses)) if losses else float("nan")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _check_output_dir(config: TrainConfig) -> None:
    out = config.output_dir
    if out.exists() and not out.is_dir():
        raise UserError(f"--output-dir {out} is a file; choose a directory")
    if out.is_dir() and any(out.iterdir()) and not config.overwrite:
        raise UserError(f"output directory {out} already holds a run; pass --overwrite to replace it "
                        "or choose another --output-dir")
    if out.is_dir() and config.overwrite:
        import shutil

        shutil.rmtree(out)
