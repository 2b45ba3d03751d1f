"""Parameter groups, freezing, and the learning-rate schedule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ragtrain.errors import UserError
from ragtrain.model.encoder import Encoder, freeze_base
from ragtrain.model.loading import load_encoder
from ragtrain.model.settings import TextOptions, TextSettings
from ragtrain.training.optim import build_optimizer, learning_rates, lr_multiplier, parameter_groups, set_learning_rates


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
    encoder = load_encoder(str(tiny_model), TextOptions(output_dim=8))
    groups = {g["name"]: g for g in parameter_groups(encoder, 0.01, base_lr=1e-5, head_lr=1e-3)}
    names = {id(p): n for n, p in encoder.named_parameters()}
    assert set(groups) == {"base_decay", "base_no_decay", "head_decay", "head_no_decay"}
    for key, group in groups.items():
        assert group["weight_decay"] == (0.0 if key.endswith("no_decay") else 0.01)
        assert group["lr"] == (1e-3 if key.startswith("head") else 1e-5)
    assert [names[id(p)] for p in groups["head_decay"]["params"]] == ["projection.weight"]
    assert [names[id(p)] for p in groups["head_no_decay"]["params"]] == ["projection.bias"]
    total = sum(len(g["params"]) for g in groups.values())
    assert total == len(list(encoder.parameters()))


def tiny_architecture(name: str) -> nn.Module:
    from transformers import BertConfig, BertModel, GPT2Config, GPT2Model, Qwen3Config, Qwen3Model

    if name == "bert":
        return BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                    intermediate_size=32, max_position_embeddings=32))
    if name == "gpt2":
        return GPT2Model(GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=32,
                                    bos_token_id=0, eos_token_id=0))
    return Qwen3Model(Qwen3Config(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                  num_attention_heads=2, num_key_value_heads=1, head_dim=8))


# Each architecture's own names for what must not decay: biases and normalisation gains.
NOT_DECAYED = {
    "bert": lambda n: n.endswith(".bias") or ".LayerNorm." in n,
    "gpt2": lambda n: n.endswith(".bias") or ".ln_1." in n or ".ln_2." in n or n.startswith("transformer.ln_f."),
    "qwen3": lambda n: n.endswith(("q_norm.weight", "k_norm.weight", "input_layernorm.weight",
                                   "post_attention_layernorm.weight")) or n == "transformer.norm.weight",
}


@pytest.mark.parametrize("architecture", list(NOT_DECAYED))
def test_no_weight_decay_on_any_normalisation_layer_or_bias(architecture):
    """By module type and shape, not by name: GPT-2's ln_*, Qwen3's RMSNorm (q_norm, k_norm) are found too."""
    encoder = Encoder(tiny_architecture(architecture), TextSettings())
    groups = {g["name"]: g for g in parameter_groups(encoder, 0.01, base_lr=1e-5, head_lr=1e-3)}
    names = {id(p): n for n, p in encoder.named_parameters()}
    not_decayed = {names[id(p)] for p in groups["base_no_decay"]["params"]}
    expected = {n for n in names.values() if NOT_DECAYED[architecture](n)}
    assert not_decayed == expected and len(expected) >= 4
    assert {names[id(p)] for p in groups["base_decay"]["params"]} == set(names.values()) - expected


def test_set_learning_rates_scales_each_group_from_its_peak(tiny_model):
    encoder = load_encoder(str(tiny_model), TextOptions(output_dim=8))
    optimizer = build_optimizer(encoder, 0.01, base_lr=1e-5, head_lr=1e-3)
    set_learning_rates(optimizer, 0.5)
    rates = learning_rates(optimizer)
    assert rates["lr_base_decay"] == pytest.approx(5e-6) and rates["lr_head_no_decay"] == pytest.approx(5e-4)


def test_freeze_base_trains_only_the_head(tiny_model):
    encoder = load_encoder(str(tiny_model), TextOptions(output_dim=8))
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
    encoder = load_encoder(str(tiny_model), TextOptions())
    with pytest.raises(UserError, match="--output-dim"):
        freeze_base(encoder)
