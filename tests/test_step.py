"""One optimizer step: accumulation is the mean of the micro-batches, repeated passages leave the softmax, the
fp16 scaler unscales before clipping, a non-finite step changes nothing, and the isotropy term follows the head."""

from __future__ import annotations

import math

import pytest
import torch

import ragtrain.training.step as step_module
from ragtrain.config.train import TrainConfig
from ragtrain.data.triples import Triple, load_triples, tokenize_triples
from ragtrain.model.loading import load_encoder
from ragtrain.model.runtime import Runtime
from ragtrain.model.saving import save_encoder
from ragtrain.model.settings import TextOptions
from ragtrain.model.world import WorldInfo
from ragtrain.training.loss import contrastive_loss
from ragtrain.training.step import loss_options, step_batches, step_directions, train_step
from ragtrain.training.validation import validation_loss
from tests.conftest import with_length, write_triples

CPU = torch.device("cpu")


def one_process_batches(data, indices, cfg) -> list:
    return step_batches(data, indices, cfg, WorldInfo(), 0)


def test_accumulation_is_the_mean_of_the_micro_batch_gradients(tiny_model):
    encoder = load_encoder(str(tiny_model), TextOptions())
    encoder.eval()  # no dropout: the two computations must see the same network
    triples = load_triples(write_triples(tiny_model.parent / "acc.jsonl", count=8))
    data = tokenize_triples(triples, with_length(encoder, 32))
    cfg = TrainConfig(train_data=tiny_model, max_grad_norm=0.0, temperature=0.1, grad_accum_steps=2)
    halves = one_process_batches(data, list(range(8)), cfg)
    assert [b.rows for b in halves] == [4, 4]
    expected = {n: torch.zeros_like(p) for n, p in encoder.named_parameters()}
    for half in halves:  # separate losses, gradients averaged
        encoder.zero_grad()
        contrastive_loss(encoder.embed(**half.queries), encoder.embed(**half.docs), 0.1)[0].backward()
        for n, p in encoder.named_parameters():
            expected[n] += p.grad / 2 if p.grad is not None else 0
    before = {n: p.detach().clone() for n, p in encoder.named_parameters()}
    optimizer = torch.optim.SGD(encoder.parameters(), lr=1.0)
    result = train_step(encoder, optimizer, Runtime(CPU).grad_scaler(), halves, cfg, Runtime(CPU), loss_options(cfg, encoder.settings))
    assert result.triples == 8 and result.masked == 0 and not result.skipped
    for n, p in encoder.named_parameters():
        assert torch.allclose(before[n] - p.detach(), expected[n], atol=1e-6), n
    # and it is not one batch of 8: that one has 14 in-batch negatives per query, not 6
    encoder.zero_grad()
    (whole,) = one_process_batches(data, list(range(8)), TrainConfig(train_data=tiny_model))
    for n, p in encoder.named_parameters():
        p.data.copy_(before[n])
    contrastive_loss(encoder.embed(**whole.queries), encoder.embed(**whole.docs), 0.1)[0].backward()
    word = "transformer.embeddings.word_embeddings.weight"
    assert not torch.allclose(dict(encoder.named_parameters())[word].grad, expected[word], atol=1e-6)


def test_the_step_masks_repeated_passages(tiny_model):
    """Through train_step: the loss of a batch whose passages repeat is the loss without those candidates."""
    encoder = load_encoder(str(tiny_model), TextOptions())
    encoder.eval()
    triples = [Triple("cat query", "a cat sat on the mat", ("a dog ran",)), Triple("moon query", "the moon", ()),
               Triple("mat query", "A cat  sat on the mat", ("the moon",))]  # 0's passage again; 1's as a negative
    data = tokenize_triples(triples, with_length(encoder, 32))
    cfg = TrainConfig(train_data=tiny_model, max_grad_norm=0.0, temperature=0.1)
    (batch,) = one_process_batches(data, [0, 1, 2], cfg)
    # documents: positives 0-2, negatives "a dog ran" (3) and "the moon" (4)
    assert batch.masked == 3  # query 0: column 2 (its passage again); query 1: column 4; query 2: column 0
    with torch.no_grad():
        query_emb, doc_emb = encoder.embed(**batch.queries), encoder.embed(**batch.docs)  # (3, D), (5, D)
    scores = torch.nn.functional.normalize(query_emb, dim=-1) @ torch.nn.functional.normalize(doc_emb, dim=-1).T / 0.1
    kept = [[0, 1, 3, 4], [0, 1, 2, 3], [1, 2, 3, 4]]
    expected = -sum(torch.log_softmax(scores[i, cols], dim=0)[cols.index(i)] for i, cols in enumerate(kept)) / 3
    result = train_step(encoder, torch.optim.SGD(encoder.parameters(), lr=0.0), Runtime(CPU).grad_scaler(),
                        [batch], cfg, Runtime(CPU), loss_options(cfg, encoder.settings))
    assert result.parts["loss"] == pytest.approx(expected.item(), rel=1e-5)
    # the validation loss masks them too (one batch of the three triples)
    validation_cfg = TrainConfig(train_data=tiny_model, temperature=0.1, batch_size=3)
    loss = loss_options(validation_cfg, encoder.settings)
    assert validation_loss(encoder, data, loss, 3, validation_cfg.seed, Runtime(CPU)) == pytest.approx(expected.item(), rel=1e-5)


def small_batch(tiny_model, count: int = 4):
    encoder = load_encoder(str(tiny_model), TextOptions())
    encoder.eval()
    data = tokenize_triples(load_triples(write_triples(tiny_model.parent / "s.jsonl", count=count)), with_length(encoder, 32))
    return encoder, data


@pytest.mark.parametrize("grad_cache", [False, True], ids=["plain", "grad-cache"])
def test_a_scaled_step_unscales_before_clipping_and_skips_on_overflow(tiny_model, grad_cache):
    """The fp16 path's scaler logic, on CPU (torch's GradScaler works there), with and without GradCache: a
    finite scale gives the unscaled gradient norm and an update; an overflowing scale skips the update."""
    encoder, data = small_batch(tiny_model)
    cfg = TrainConfig(train_data=tiny_model, max_grad_norm=0.0, grad_cache=grad_cache, mini_batch_size=2, temperature=0.05)
    batch = one_process_batches(data, [0, 1, 2, 3], cfg)
    optimizer = torch.optim.SGD(encoder.parameters(), lr=0.1)
    before = {n: p.detach().clone() for n, p in encoder.named_parameters()}

    def restore() -> None:
        for n, p in encoder.named_parameters():
            p.data.copy_(before[n])

    plain = train_step(encoder, optimizer, Runtime(CPU).grad_scaler(), batch, cfg, Runtime(CPU), loss_options(cfg, encoder.settings))
    restore()
    scaled = train_step(encoder, optimizer, torch.amp.GradScaler("cpu", init_scale=2.0**12), batch, cfg, Runtime(CPU), loss_options(cfg, encoder.settings))
    assert not scaled.skipped and scaled.grad_norm == pytest.approx(plain.grad_norm, rel=1e-4)
    assert scaled.parts["loss"] == pytest.approx(plain.parts["loss"], rel=1e-6)
    assert any(not torch.equal(p, before[n]) for n, p in encoder.named_parameters())
    restore()
    overflow = torch.amp.GradScaler("cpu", init_scale=3e38)  # loss * scale is inf: every gradient overflows
    result = train_step(encoder, optimizer, overflow, batch, cfg, Runtime(CPU), loss_options(cfg, encoder.settings))
    assert result.skipped and overflow.get_scale() < 3e38
    assert all(torch.equal(p, before[n]) for n, p in encoder.named_parameters())


@pytest.mark.parametrize("what", ["loss", "gradient"])
def test_a_step_with_a_non_finite_loss_or_gradient_is_skipped(tiny_model, monkeypatch, what):
    encoder, data = small_batch(tiny_model)
    cfg = TrainConfig(train_data=tiny_model, temperature=0.05)
    batch = one_process_batches(data, [0, 1, 2, 3], cfg)
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=0.1)
    before = {n: p.detach().clone() for n, p in encoder.named_parameters()}
    if what == "loss":
        real = step_module.contrastive_loss
        monkeypatch.setattr(step_module, "contrastive_loss", lambda *a, **k: (real(*a, **k)[0] * math.nan, {"loss": math.nan}))
    else:  # a finite loss whose gradient overflows in one parameter
        encoder.transformer.embeddings.word_embeddings.weight.register_hook(lambda grad: grad * math.inf)
    result = train_step(encoder, optimizer, Runtime(CPU).grad_scaler(), batch, cfg, Runtime(CPU), loss_options(cfg, encoder.settings))
    assert result.skipped and (math.isnan(result.parts["loss"]) == (what == "loss"))
    assert all(torch.equal(p, before[n]) for n, p in encoder.named_parameters())
    assert optimizer.state == {}  # AdamW's moments untouched too


def test_isotropy_directions_follow_a_saved_head(tiny_model, tmp_path):
    """A starting model with its own projection head (no --output-dim): the directions have its size."""
    encoder = load_encoder(str(tiny_model), TextOptions(output_dim=8))
    save_encoder(encoder, tmp_path / "with-head")
    encoder = load_encoder(str(tmp_path / "with-head"), TextOptions())
    assert encoder.projection.out_features == 8
    cfg = TrainConfig(train_data=tiny_model, isotropy_weight=0.1, temperature=0.05)
    directions = step_directions(cfg, encoder, 0, CPU)
    assert directions.shape == (8, 256)
    data = tokenize_triples(load_triples(write_triples(tmp_path / "t.jsonl", count=4)), with_length(encoder, 32))
    result = train_step(encoder, torch.optim.SGD(encoder.parameters(), lr=0.0), Runtime(CPU).grad_scaler(),
                        one_process_batches(data, [0, 1, 2, 3], cfg), cfg, Runtime(CPU),
                        loss_options(cfg, encoder.settings), directions)
    assert result.parts["loss_isotropy"] > 0 and math.isfinite(result.parts["loss"])
