"""Distillation: margin-MSE and KL on hand-made scores (values and gradients), teacher scores in triples, the
candidates' layout, and train --loss distill end to end."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TOPICS, encoder_at, jsonl_rows, user_error, write_triples

from ragtrain.config.train import TrainConfig
from ragtrain.data.triples import collate, distill_targets, load_triples, tokenize_triples
from ragtrain.errors import UserError
from ragtrain.training.loss import candidate_scores, distill_kl, distill_loss, margin_mse

STUDENT = [[2.0, 1.0, 0.5], [1.0, 3.0, 0.0]]
TEACHER = [[4.0, 1.0, 2.0], [0.0, 1.0, 7.0]]
VALID = [[True, True, True], [True, True, False]]  # the second query has one negative: column 2 is padding


def test_margin_mse_by_hand_with_its_gradient():
    student = torch.tensor(STUDENT, requires_grad=True)
    loss = margin_mse(student, torch.tensor(TEACHER), torch.tensor(VALID))
    # margins student - teacher: q0: (1 - 3), (1.5 - 2); q1: (-2 - (-1)); padding left out
    diffs = [1.0 - 3.0, 1.5 - 2.0, -2.0 - (-1.0)]
    assert loss.item() == pytest.approx(sum(d * d for d in diffs) / 3)
    loss.backward()
    # d/ds_pos = sum over its negatives of 2 d / 3; d/ds_neg = -2 d / 3
    expected = [[2 * (diffs[0] + diffs[1]) / 3, -2 * diffs[0] / 3, -2 * diffs[1] / 3], [2 * diffs[2] / 3, -2 * diffs[2] / 3, 0.0]]
    assert torch.allclose(student.grad, torch.tensor(expected))


def test_kl_by_hand_against_a_reference_and_its_gradient():
    student = torch.tensor(STUDENT, requires_grad=True)
    loss = distill_kl(student, torch.tensor(TEACHER), torch.tensor(VALID))
    reference = 0.0
    for s, t, v in zip(STUDENT, TEACHER, VALID):
        n = sum(v)
        p = torch.softmax(torch.tensor(t[:n]), 0)
        reference += torch.nn.functional.kl_div(torch.log_softmax(torch.tensor(s[:n]), 0), p, reduction="sum").item()
    assert loss.item() == pytest.approx(reference / 2, rel=1e-5)
    loss.backward()
    # d KL / d s = (softmax(s) - softmax(t)) / B on the real candidates, 0 on padding
    for row, (s, t, v) in enumerate(zip(STUDENT, TEACHER, VALID)):
        n = sum(v)
        grad = (torch.softmax(torch.tensor(s[:n]), 0) - torch.softmax(torch.tensor(t[:n]), 0)) / 2
        assert torch.allclose(student.grad[row, :n], grad, atol=1e-6)
        assert torch.all(student.grad[row, n:] == 0)


def test_equal_scores_cost_nothing():
    scores, valid = torch.tensor(TEACHER), torch.tensor(VALID)
    assert margin_mse(scores, scores, valid).item() == 0
    assert distill_kl(scores, scores, valid).item() == pytest.approx(0, abs=1e-7)


def test_student_scores_pick_each_querys_own_candidates():
    query_emb = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    doc_emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [3.0, 4.0], [0.0, -1.0]])
    candidates = torch.tensor([[0, 2, 3], [1, 3, 1]])
    scores = candidate_scores(query_emb, doc_emb, candidates, temperature=0.5)
    assert torch.allclose(scores, torch.tensor([[2.0, 1.2, 0.0], [2.0, -2.0, 2.0]]))  # cosines / 0.5


def test_distill_loss_adds_infonce_by_its_weight():
    torch.manual_seed(0)
    query_emb, doc_emb = torch.randn(2, 4), torch.randn(5, 4)
    candidates, valid = torch.tensor([[0, 2, 3], [1, 4, 1]]), torch.tensor(VALID)
    teacher = torch.tensor(TEACHER)
    alone, parts = distill_loss(query_emb, doc_emb, candidates, valid, teacher, "kl", 0.1, 2.0)
    both, both_parts = distill_loss(query_emb, doc_emb, candidates, valid, teacher, "kl", 0.1, 2.0, infonce_weight=0.5)
    assert both.item() == pytest.approx(alone.item() + 0.5 * both_parts["loss_q2d"], rel=1e-5)
    assert parts["loss_distill"] == pytest.approx(
        distill_kl(candidate_scores(query_emb, doc_emb, candidates, 0.1), teacher / 2.0, valid).item())


def write_scored(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_scores_follow_the_negatives_kept(tmp_path):
    rows = [{"query": "q", "positive": "p", "negatives": ["a", "p", "b", "a"], "scores": [5, 1, 9, 2, 3]}]
    triple = load_triples(write_scored(tmp_path / "t.jsonl", rows))[0]
    assert triple.negatives == ("a", "b") and triple.scores == (5.0, 1.0, 2.0)  # the positive's copy and a repeat go


@pytest.mark.parametrize("scores", [[1, 2], [1, "2", 3], [1, float("nan"), 3], "1,2,3", [True, 1, 2]])
def test_bad_scores_are_refused(tmp_path, scores):
    rows = [{"query": "q", "positive": "p", "negatives": ["a", "b"], "scores": scores}]
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(rows[0], allow_nan=True) + "\n")
    with pytest.raises(UserError, match=r"t.jsonl:1: 'scores' must be a list of 3 finite numbers"):
        load_triples(path)


def test_distill_targets_follow_collates_layout(tmp_path, tiny_model):
    rows = [{"query": f"q{n}", "positive": f"p{n}", "negatives": [f"n{n}-{j}" for j in range(n)],
             "scores": [float(10 * n + j) for j in range(n + 1)]} for n in range(3)]
    data = tokenize_triples(load_triples(write_scored(tmp_path / "t.jsonl", rows)), encoder_at(tiny_model, 16))
    batch = [2, 0, 1]
    candidates, valid, teacher = distill_targets(data, batch)
    _, docs = collate(data, batch, 0)
    assert docs["input_ids"].size(0) == 3 + 2 + 0 + 1
    # batch rows: triple 2 (negatives at rows 3, 4), triple 0 (none), triple 1 (row 5)
    assert candidates.tolist() == [[0, 3, 4], [1, 1, 1], [2, 5, 2]]
    assert valid.tolist() == [[True, True, True], [True, False, False], [True, True, False]]
    assert teacher.tolist() == [[20.0, 21.0, 22.0], [0.0, 0.0, 0.0], [10.0, 11.0, 0.0]]


def test_triples_without_scores_under_distill_are_one_line(triples_file, tmp_path):
    line = user_error(["train", "--train-data", str(triples_file), "-o", str(tmp_path / "run"), "--loss", "distill"])
    assert f"{triples_file}:1: no 'scores' (teacher scores)" in line and "prepare-data --teacher hybrid" in line
    assert not (tmp_path / "run" / "final").exists()


@pytest.mark.parametrize("extra, message", [
    (["--loss", "mse"], "--loss must be infonce or distill"),
    (["--distill-objective", "l2"], "--distill-objective must be margin-mse or kl"),
    (["--teacher-temperature", "0"], "--teacher-temperature must be a positive number"),
    (["--loss", "distill", "--symmetric"], "which --loss distill replaces"),
])
def test_distill_option_errors(triples_file, tmp_path, extra, message):
    assert message in user_error(["train", "--train-data", str(triples_file), "-o", str(tmp_path / "run"), *extra])


@pytest.mark.slow
def test_training_moves_the_student_toward_the_teacher(tmp_path, tiny_model):
    """The teacher prefers each triple's negative; after training the student's margin (positive - negative)
    has moved down from where the untrained model had it."""
    from ragtrain.commands.train import train

    rows = jsonl_rows(write_triples(tmp_path / "plain.jsonl", count=24, negatives=1))
    for row in rows:
        row["scores"] = [-2.0, 2.0]
    path = write_scored(tmp_path / "scored.jsonl", rows)
    config = TrainConfig(train_data=path, model=str(tiny_model), output_dir=tmp_path / "run", loss="distill",
                         distill_objective="margin-mse", epochs=3, batch_size=8, learning_rate=1e-3, max_seq_length=32,
                         warmup_ratio=0.0, device="cpu", log_steps=1)

    def mean_margin(model_dir) -> float:
        encoder = encoder_at(model_dir, 32)
        data = tokenize_triples(load_triples(path), encoder)
        batch = list(range(len(data)))
        queries, docs = collate(data, batch, encoder.pad_id)
        candidates, _, _ = distill_targets(data, batch)
        with torch.no_grad():
            scores = candidate_scores(encoder.embed(**queries), encoder.embed(**docs), candidates, 0.05)
        return (scores[:, 0] - scores[:, 1]).mean().item()

    before = mean_margin(tiny_model)
    final = train(config)
    assert mean_margin(final) < before - 0.2  # measured: 0.05 before, -0.39 after 4 epochs
    log = jsonl_rows(tmp_path / "run" / "metrics.jsonl")
    assert all("loss_distill" in row for row in log if "loss" in row)
    assert TOPICS


def test_distillation_under_grad_cache_has_the_uncached_gradient(tmp_path, tiny_model):
    """--loss distill --grad-cache: the teacher targets index the whole batch's documents, so the cached step's
    gradient equals the one-pass step's (dropout off: both see the same network)."""
    from ragtrain.model.runtime import Runtime
    from ragtrain.model.world import WorldInfo
    from ragtrain.training.step import loss_options, step_batches, train_step

    rows = jsonl_rows(write_triples(tmp_path / "plain.jsonl", count=6, negatives=2))
    for n, row in enumerate(rows):
        row["scores"] = [3.0, float(n % 3), -1.0]
    data = tokenize_triples(load_triples(write_scored(tmp_path / "scored.jsonl", rows), require_scores=True),
                            encoder_at(tiny_model, 32))
    gradients = []
    for grad_cache in (False, True):
        encoder = encoder_at(tiny_model, 32)
        encoder.eval()
        config = TrainConfig(train_data=tiny_model, loss="distill", distill_objective="kl", temperature=0.05,
                             distill_infonce_weight=0.5, grad_cache=grad_cache, mini_batch_size=4, max_grad_norm=0.0)
        config.validate()
        runtime = Runtime(torch.device("cpu"))
        batches = step_batches(data, list(range(6)), config, WorldInfo(), 0)
        result = train_step(encoder, torch.optim.SGD(encoder.parameters(), lr=0.0), runtime.grad_scaler(), batches,
                            config, runtime, loss_options(config, encoder.settings))
        gradients.append((result.parts["loss"], {n: p.grad.clone() for n, p in encoder.named_parameters() if p.grad is not None}))
    (plain_loss, plain), (cached_loss, cached) = gradients
    assert cached_loss == pytest.approx(plain_loss, rel=1e-5)
    assert plain.keys() == cached.keys() and len(plain) > 10
    scale = max(float(g.abs().max()) for g in plain.values())  # a key bias's gradient is 0 up to rounding
    assert all(torch.allclose(cached[n], plain[n], rtol=1e-4, atol=1e-5 * scale) for n in plain)
