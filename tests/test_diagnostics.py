"""The step's readouts on hand-made embeddings whose answers are worked out by hand, and through a real step."""

from __future__ import annotations

import math

import pytest
import torch

from ragtrain.config.train import TrainConfig
from ragtrain.data.triples import Triple, tokenize_triples
from ragtrain.model.loading import load_encoder
from ragtrain.model.runtime import Runtime
from ragtrain.model.settings import TextOptions
from ragtrain.model.world import WorldInfo
from ragtrain.training.diagnostics import (
    diagnostics_postfix,
    embedding_diagnostics,
    embedding_std,
    mean_pairwise_cosine,
)
from ragtrain.training.step import loss_options, step_batches, train_step

CPU = torch.device("cpu")


def test_positive_and_hardest_negative_cosines_by_hand():
    # queries along x and y; docs: their positives (q0's at 60 degrees, q1's exact), then one hard negative
    q = torch.tensor([[2.0, 0.0], [0.0, 3.0]])  # raw: the scale must not matter
    d = torch.tensor([[1.0, math.sqrt(3.0)], [0.0, 5.0], [1.0, 0.0]])
    got = embedding_diagnostics(q, d)
    assert got["cos_positive"] == pytest.approx((0.5 + 1.0) / 2)
    # q0's negatives: d1 (cos 0), d2 (cos 1) -> 1; q1's: d0 (cos sqrt(3)/2), d2 (cos 0) -> sqrt(3)/2
    assert got["cos_hardest_negative"] == pytest.approx((1.0 + math.sqrt(3) / 2) / 2)
    # masking q0's d2 leaves d1 (cos 0) as its hardest
    mask = torch.tensor([[False, False, True], [False, False, False]])
    assert embedding_diagnostics(q, d, mask)["cos_hardest_negative"] == pytest.approx((0.0 + math.sqrt(3) / 2) / 2)


def test_a_query_without_negatives_is_left_out_and_none_at_all_is_nan():
    q, d = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    mask = torch.tensor([[False, True], [False, False]])  # q0's only negative is masked
    assert embedding_diagnostics(q, d, mask)["cos_hardest_negative"] == pytest.approx(0.0)  # q1's alone
    lone = embedding_diagnostics(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.6, 0.8]]))
    assert lone["cos_positive"] == pytest.approx(0.6) and math.isnan(lone["cos_hardest_negative"])


def test_embedding_std_and_mean_pairwise_cosine_by_hand():
    collapsed = torch.tensor([[0.6, 0.8]] * 4)
    assert embedding_std(collapsed) == pytest.approx(0.0, abs=1e-7)
    assert mean_pairwise_cosine(collapsed) == pytest.approx(1.0)
    # +-x and +-y: each dimension holds (1, -1, 0, 0): std sqrt(1/2); the six pairs' cosines: -1, -1 and four 0
    cross = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    assert embedding_std(cross) == pytest.approx(math.sqrt(0.5))
    assert mean_pairwise_cosine(cross) == pytest.approx(-2 / 6)
    # against the (n, n) matrix on random rows
    unit = torch.nn.functional.normalize(torch.randn(7, 5, generator=torch.Generator().manual_seed(0)), dim=-1)
    full = unit @ unit.T
    assert mean_pairwise_cosine(unit) == pytest.approx(((full.sum() - full.trace()) / 42).item(), abs=1e-6)
    assert math.isnan(mean_pairwise_cosine(unit[:1]))


def test_the_diagnostics_read_normalised_embeddings_of_queries_and_documents_together():
    q = torch.tensor([[3.0, 0.0]])
    d = torch.tensor([[0.0, 2.0], [-5.0, 0.0]])
    got = embedding_diagnostics(q, d)
    rows = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    assert got["embedding_std"] == pytest.approx(rows.std(dim=0, unbiased=False).mean().item())
    assert got["mean_pairwise_cos"] == pytest.approx((0 - 1 + 0) / 3)
    assert diagnostics_postfix(got | {"loss": 1.0}) == {"pos": "0.000", "neg": "-1.000",
                                                        "std": f"{got['embedding_std']:.3f}", "iso": "-0.333"}


def test_a_training_step_reports_the_diagnostics_of_its_embeddings(tiny_model):
    """Through train_step (learning rate 0): the step's figures are those of the batch's embeddings."""
    encoder = load_encoder(str(tiny_model), TextOptions(max_length=32))
    encoder.eval()
    triples = [Triple("cat query", "a cat sat on the mat", ("a dog ran",)), Triple("moon query", "the moon", ()),
               Triple("mat query", "A cat  sat on the mat", ("the moon",))]
    data = tokenize_triples(triples, encoder)
    cfg = TrainConfig(train_data=tiny_model, max_grad_norm=0.0, temperature=0.05)
    (batch,) = step_batches(data, [0, 1, 2], cfg, WorldInfo(), 0)
    with torch.no_grad():
        expected = embedding_diagnostics(encoder.embed(**batch.queries), encoder.embed(**batch.docs), batch.mask)
    result = train_step(encoder, torch.optim.SGD(encoder.parameters(), lr=0.0), Runtime(CPU).grad_scaler(),
                        [batch], cfg, Runtime(CPU), loss_options(cfg, encoder.settings))
    for name, value in expected.items():
        assert result.parts[name] == pytest.approx(value, rel=1e-5), name
    assert -1 <= result.parts["cos_hardest_negative"] <= 1 and result.parts["embedding_std"] > 0
