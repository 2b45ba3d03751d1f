"""The contrastive loss and the isotropy regulariser against numpy references and hand-worked values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ragtrain.training.loss import (
    contrastive_loss,
    epps_pulley,
    info_nce,
    isotropy_generator,
    random_directions,
    sigreg,
)


def numpy_info_nce(q: np.ndarray, d: np.ndarray, temperature: float) -> float:
    scores = q @ d.T / temperature
    log_softmax = scores - np.log(np.exp(scores - scores.max(1, keepdims=True)).sum(1, keepdims=True)) - scores.max(1, keepdims=True)
    return float(-np.mean([log_softmax[i, i] for i in range(len(q))]))


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_info_nce_matches_numpy_reference():
    rng = np.random.default_rng(0)
    q, d = unit(rng.normal(size=(4, 6))), unit(rng.normal(size=(7, 6)))  # 4 positives + 3 hard negatives
    got = info_nce(torch.tensor(q), torch.tensor(d), 0.05).item()
    assert got == pytest.approx(numpy_info_nce(q, d, 0.05), rel=1e-9)


def test_info_nce_by_hand_for_two_queries():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    d = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # each query: own positive scores 1/t, the other 0 -> loss = log(1 + exp(-1/t))
    assert info_nce(q, d, 0.5).item() == pytest.approx(math.log(1 + math.exp(-2.0)), rel=1e-6)


def test_contrastive_loss_normalises_before_scoring():
    rng = np.random.default_rng(1)
    q, d = rng.normal(size=(3, 5)) * 7, rng.normal(size=(5, 5)) * 3
    loss, parts = contrastive_loss(torch.tensor(q), torch.tensor(d), 0.1)
    assert loss.item() == pytest.approx(numpy_info_nce(unit(q), unit(d), 0.1), rel=1e-6)
    assert set(parts) == {"loss_q2d", "loss"}
    raw, _ = contrastive_loss(torch.tensor(q), torch.tensor(d), 0.1, normalize=False)
    assert raw.item() == pytest.approx(numpy_info_nce(q, d, 0.1), rel=1e-6)


def test_symmetric_term_averages_both_directions():
    rng = np.random.default_rng(2)
    q, d = unit(rng.normal(size=(4, 8))), unit(rng.normal(size=(6, 8)))
    loss, parts = contrastive_loss(torch.tensor(q), torch.tensor(d), 0.05, symmetric=True)
    forward, backward = numpy_info_nce(q, d, 0.05), numpy_info_nce(d[:4], q, 0.05)  # positives pick their query
    assert parts["loss_q2d"] == pytest.approx(forward, rel=1e-5)
    assert parts["loss_d2q"] == pytest.approx(backward, rel=1e-5)
    assert loss.item() == pytest.approx((forward + backward) / 2, rel=1e-5)


def test_gradient_matches_autograd_gradcheck():
    torch.manual_seed(0)
    q = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    d = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    directions = random_directions(4, 8, torch.Generator().manual_seed(0)).double()

    def total(q, d):  # every part, computed in float64 so finite differences are exact enough
        qn, dn = F.normalize(q, dim=-1), F.normalize(d, dim=-1)
        return (info_nce(qn, dn, 0.1) + info_nce(dn[:3], qn, 0.1)) / 2 + 0.5 * epps_pulley(torch.cat([q, d]) @ directions).mean()

    assert torch.autograd.gradcheck(total, (q, d))


def test_gradient_of_training_loss_against_finite_differences():
    torch.manual_seed(1)
    q, d = torch.randn(3, 4, requires_grad=True), torch.randn(6, 4)
    loss, _ = contrastive_loss(q, d, 0.2, symmetric=True)
    loss.backward()
    eps, numeric = 1e-3, torch.zeros_like(q)
    for i in range(3):
        for j in range(4):
            shift = torch.zeros_like(q)
            shift[i, j] = eps
            up = contrastive_loss(q.detach() + shift, d, 0.2, symmetric=True)[0].item()
            down = contrastive_loss(q.detach() - shift, d, 0.2, symmetric=True)[0].item()
            numeric[i, j] = (up - down) / (2 * eps)
    assert torch.allclose(q.grad, numeric, atol=2e-3)


def numpy_epps_pulley(x: np.ndarray) -> float:
    """Dense trapezoid over [-8, 8] of |phi_emp(t) - exp(-t^2/2)|^2 exp(-t^2/2)."""
    t = np.linspace(-8, 8, 4001)
    phi = np.exp(1j * np.outer(t, x)).mean(axis=1)
    integrand = np.abs(phi - np.exp(-t**2 / 2)) ** 2 * np.exp(-t**2 / 2)
    return float(np.sum((integrand[1:] + integrand[:-1]) / 2 * np.diff(t)))


def test_epps_pulley_matches_numpy_reference():
    rng = np.random.default_rng(3)
    samples = np.stack([rng.normal(size=200), rng.uniform(-2, 2, size=200), rng.exponential(size=200)], axis=1)
    got = epps_pulley(torch.tensor(samples, dtype=torch.float32)).numpy()
    expected = [numpy_epps_pulley(samples[:, k]) for k in range(3)]
    assert got == pytest.approx(expected, rel=2e-3, abs=1e-6)


def test_epps_pulley_of_a_point_mass_has_a_closed_form():
    # phi_emp = 1: integral of (1 - e^{-t^2/2})^2 e^{-t^2/2} = sqrt(2 pi) - 2 sqrt(pi) + sqrt(2 pi / 3)
    closed = math.sqrt(2 * math.pi) - 2 * math.sqrt(math.pi) + math.sqrt(2 * math.pi / 3)
    assert epps_pulley(torch.zeros(10, 1)).item() == pytest.approx(closed, rel=1e-3)


def test_sigreg_is_near_zero_for_isotropic_gaussians_and_large_otherwise():
    generator = torch.Generator().manual_seed(0)
    directions = random_directions(16, 64, generator)
    gaussian = torch.randn(20_000, 16, generator=generator)
    stretched = gaussian * torch.linspace(0.2, 3.0, 16)  # Gaussian, but not isotropic
    shifted = gaussian + 2.0
    assert sigreg(gaussian, directions).item() < 1e-3
    for other in (stretched, shifted):
        assert sigreg(other, directions).item() > 0.05
    # in 1-D, a unit-variance uniform is far from N(0, 1) (in many dimensions its projections are near-Gaussian)
    uniform = (torch.rand(20_000, 1, generator=generator) - 0.5) * math.sqrt(12)
    assert epps_pulley(uniform).item() > 20 * epps_pulley(gaussian[:, :1]).item()


def test_isotropy_part_is_logged_and_weighted():
    torch.manual_seed(4)
    q, d = torch.randn(4, 8) * 3, torch.randn(4, 8) * 3
    directions = random_directions(8, 32, isotropy_generator(7, 0))
    plain, _ = contrastive_loss(q, d, 0.05)
    loss, parts = contrastive_loss(q, d, 0.05, isotropy_weight=0.5, directions=directions)
    assert parts["loss_isotropy"] == pytest.approx(sigreg(torch.cat([q, d]), directions).item(), rel=1e-6)
    assert loss.item() == pytest.approx(plain.item() + 0.5 * parts["loss_isotropy"], rel=1e-6)


def test_directions_are_unit_and_a_function_of_seed_and_step():
    a = random_directions(8, 5, isotropy_generator(1, 3))
    assert torch.allclose(a.norm(dim=0), torch.ones(5))
    assert torch.equal(a, random_directions(8, 5, isotropy_generator(1, 3)))
    assert not torch.equal(a, random_directions(8, 5, isotropy_generator(1, 4)))


def test_masked_candidates_leave_the_softmax():
    """The masked loss is the numpy InfoNCE over the remaining columns only."""
    rng = np.random.default_rng(5)
    q, d = unit(rng.normal(size=(3, 6))), unit(rng.normal(size=(6, 6)))  # 3 positives + 3 hard negatives
    q[0] = d[0]  # query 0 finds its passage, which comes back as positive 1 and as negative 4
    d[1] = d[4] = d[0]
    d[5] = d[2]  # query 2's passage again, as negative 5
    mask = torch.zeros(3, 6, dtype=torch.bool)
    mask[0, [1, 4]] = mask[1, [0, 4]] = mask[2, 5] = True
    got = info_nce(torch.tensor(q), torch.tensor(d), 0.05, mask).item()
    scores = q @ d.T / 0.05
    expected = 0.0
    for i, kept in enumerate([[0, 2, 3, 5], [1, 2, 3, 5], [0, 1, 2, 3, 4]]):
        row = scores[i, kept]
        expected -= (scores[i, i] - row.max() - math.log(np.exp(row - row.max()).sum())) / 3
    assert got == pytest.approx(expected, rel=1e-9)
    unmasked = info_nce(torch.tensor(q), torch.tensor(d), 0.05).item()
    assert unmasked > got + 0.5  # the copies of a query's positive weighed heavily as negatives


def test_a_masked_column_gets_no_gradient_from_its_query():
    torch.manual_seed(6)
    q = torch.randn(2, 4, dtype=torch.float64)
    d = torch.randn(4, 4, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[False, False, True, False], [False, False, False, False]])  # query 0 drops document 2
    info_nce(q[:1], d, 0.1, mask[:1]).backward()  # query 0's term alone
    assert torch.equal(d.grad[2], torch.zeros(4, dtype=torch.float64))
    assert d.grad[3].abs().sum() > 0 and d.grad[0].abs().sum() > 0  # the columns it keeps do get one
    d.grad = None
    info_nce(q, d, 0.1, mask).backward()  # both queries: document 2's gradient is query 1's term alone (/ 2)
    reference = d.detach().clone().requires_grad_(True)
    (F.cross_entropy(q[1:] @ reference.T / 0.1, torch.tensor([1])) / 2).backward()
    torch.testing.assert_close(d.grad[2], reference.grad[2], rtol=1e-12, atol=1e-12)


def test_symmetric_term_masks_the_queries_that_share_a_positive():
    rng = np.random.default_rng(7)
    q, d = unit(rng.normal(size=(3, 5))), unit(rng.normal(size=(4, 5)))
    mask = torch.zeros(3, 4, dtype=torch.bool)
    mask[0, 2] = mask[2, 0] = True  # queries 0 and 2 have the same positive passage
    _, parts = contrastive_loss(torch.tensor(q), torch.tensor(d), 0.05, symmetric=True, mask=mask)
    backward = 0.0
    for i, kept in enumerate([[0, 1], [0, 1, 2], [1, 2]]):  # positive i against the queries it may pick
        row = (d[i] @ q[kept].T) / 0.05
        backward -= (d[i] @ q[i] / 0.05 - np.log(np.exp(row).sum())) / 3
    assert parts["loss_d2q"] == pytest.approx(backward, rel=1e-6)
