"""Validation: the loss on held-out triples (masked as in training, one-triple batches left out), retrieval equal
to evaluate's on the same set, and which figure counts as better."""

from __future__ import annotations

import math

import pytest
import torch

from ragtrain.commands.evaluate import evaluate
from ragtrain.config.train import TrainConfig
from ragtrain.data.evaldata import load_eval_data
from ragtrain.data.triples import Triple, collate, epoch_batches, false_negative_mask, tokenize_triples
from ragtrain.model.loading import load_encoder
from ragtrain.model.runtime import Runtime
from ragtrain.model.settings import TextOptions
from ragtrain.training.loss import contrastive_loss
from ragtrain.training.step import loss_options
from ragtrain.training.validation import is_better, retrieval_metrics, run_validation, validation_loss
from tests.conftest import evaluate_config, quiet_console, with_length

CPU = Runtime(torch.device("cpu"))
TRIPLES = [Triple("cat query", "a cat sat on the mat", ("a dog ran",)), Triple("moon query", "the moon", ()),
           Triple("sun query", "the sun is a star", ("planets orbit",))]


def test_the_loss_is_the_mean_over_batches_of_two_or_more_and_a_lone_triple_is_left_out(tiny_model):
    encoder = load_encoder(str(tiny_model))
    data = tokenize_triples(TRIPLES, with_length(encoder, 32))
    config = TrainConfig(train_data=tiny_model, batch_size=2, temperature=0.1)
    batches = epoch_batches(data, 2, config.seed, epoch=0)
    (pair,) = [b for b in batches if len(b) == 2]
    assert sorted(len(b) for b in batches) == [1, 2]
    encoder.eval()
    with torch.no_grad():
        queries, docs = collate(data, pair, 0)
        expected, _ = contrastive_loss(encoder.embed(**queries), encoder.embed(**docs), 0.1,
                                       mask=false_negative_mask(data, pair))
    loss = loss_options(config, encoder.settings)
    assert validation_loss(encoder, data, loss, 2, config.seed, CPU) == pytest.approx(expected.item(), rel=1e-6)
    assert encoder.training  # handed back in training mode
    lone = tokenize_triples(TRIPLES[:1], with_length(encoder, 32))
    assert math.isnan(validation_loss(encoder, lone, loss, 2, config.seed, CPU))  # nothing to contrast: no figure at all


def test_retrieval_metrics_are_evaluates_on_the_same_set(tiny_model, beir, tmp_path):
    encoder = load_encoder(str(tiny_model), TextOptions(max_length=64))
    ours = retrieval_metrics(encoder, load_eval_data(beir, "test"), 2, CPU)
    reference = evaluate(evaluate_config(beir, tmp_path, str(tiny_model), precision="fp32", max_seq_length=64,
                                         use_cache=False), console=quiet_console())["models"][str(tiny_model)]
    assert ours == pytest.approx({"recall@10": reference["metrics"]["recall@10"],
                                  "ndcg@10": reference["metrics"]["ndcg@10"]}, abs=1e-9)
    assert run_validation(encoder, None, None, loss_options(TrainConfig(train_data=tiny_model), encoder.settings),
                          (2, 2), 0, CPU) == {}


def test_lower_loss_and_higher_retrieval_are_better_and_nan_never_is():
    assert is_better("val_loss", 0.5, 0.6) and not is_better("val_loss", 0.7, 0.6)
    assert is_better("ndcg@10", 0.7, 0.6) and not is_better("recall@10", 0.5, 0.6)
    assert is_better("ndcg@10", 0.0, None)  # the first validation sets the mark
    assert not is_better("val_loss", math.nan, None) and not is_better("val_loss", 0.6, 0.6)
