"""Parameter groups, freezing, and the learning-rate schedule."""

from __future__ import annotations

import math

import pytest
import torch

from ragtrain.errors import UserError
from ragtrain.model import EncoderSpec, freeze_base, load_encoder
from ragtrain.optim import build_optimizer, learning_rates, lr_multiplier, parameter_groups, set_learning_rates


def test_schedule_points():
    warmup, total, floor = 10, 111, 0.1  # decay runs over steps 10..110
    assert lr_multiplier(0, warmup, total, floor) == pytest.approx(0.1)  # 1/warmup: the first step is not wasted
    assert lr_multiplier(4, warmup, total, floor) == pytest.approx(0.5)
    assert lr_multiplier(9, warmup, total, floor) == pytest.approx(1.0)  # end of warmup
    assert lr_multiplier(10, warmup, total, floor) == pytest.approx(1.0)  # start of the cosine
    assert lr_multiplier(60, warmup, total, floor) == pytest.approx(0.55)  # half-way: (1 + floor) / 2
    assert lr_multiplier(110, warmup, total, floor) == pytest.approx(0.1)  # last step: the floor
    assert lr_multiplier(35, warmup, total, 0.0) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def test_schedule_without_warmup_starts_at_peak():
    assert lr_multiplier(0, 0, 5) == 1.0
    assert lr_multiplier(4, 0, 5) == pytest.approx(0.0)


def test_no_weight_decay_on_biases_and_layer_norms_and_two_rates(tiny_model):
    encoder, _ = load_encoder(str(tiny_model), EncoderSpec(output_dim=8))
    groups = {g["name"]: g for g in parameter_groups(encoder, 0.01, base_lr=1e-5, head_lr=1e-3)}
    names = {id(p): n for n, p in encoder.named_parameters()}
    assert set(groups) == {"base_decay", "base_no_decay", "head_decay", "head_no_decay"}
    for key, group in groups.items():
        params = [names[id(p)] for p in group["params"]]
        assert group["weight_decay"] == (0.0 if key.endswith("no_decay") else 0.01)
        assert group["lr"] == (1e-3 if key.startswith("head") else 1e-5)
        if key.endswith("no_decay"):
            assert all(n.endswith("bias") or "LayerNorm" in n for n in params)
        else:
            assert not any(n.endswith("bias") or "LayerNorm" in n for n in params)
    assert [names[id(p)] for p in groups["head_decay"]["params"]] == ["projection.weight"]
    total = sum(len(g["params"]) for g in groups.values())
    assert total == len(list(encoder.parameters()))


def test_set_learning_rates_scales_each_group_from_its_peak(tiny_model):
    encoder, _ = load_encoder(str(tiny_model), EncoderSpec(output_dim=8))
    optimizer = build_optimizer(encoder, 0.01, base_lr=1e-5, head_lr=1e-3)
    set_learning_rates(optimizer, 0.5)
    rates = learning_rates(optimizer)
    assert rates["lr_base_decay"] == pytest.approx(5e-6) and rates["lr_head_no_decay"] == pytest.approx(5e-4)


def test_freeze_base_trains_only_the_head(tiny_model):
    encoder, _ = load_encoder(str(tiny_model), EncoderSpec(output_dim=8))
    freeze_base(encoder)
    optimizer = build_optimizer(encoder, 0.01, 1e-3, 1e-2)
    assert {g["name"] for g in optimizer.param_groups} == {"head_decay", "head_no_decay"}
    before = {n: p.detach().clone() for n, p in encoder.named_parameters()}
    ids = torch.randint(5, 40, (4, 9))
    encoder(ids, torch.ones_like(ids)).sum().backward()
    optimizer.step()
    for name, param in encoder.named_parameters():
        changed = not torch.equal(param, before[name])
        assert changed == name.startswith("projection."), name


def test_freeze_base_without_a_head_is_a_user_error(tiny_model):
    encoder, _ = load_encoder(str(tiny_model), EncoderSpec())
    with pytest.raises(UserError, match="--output-dim"):
        freeze_base(encoder)
