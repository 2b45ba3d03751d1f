"""Dense layers after pooling, in sentence-transformers' N_Dense/ format: written and read back to the same
function (checked against the layers' formula by hand), one plain linear head as nn.Linear, broken folders and
activations ragtrain cannot build as one line."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from ragtrain.errors import UserError
from ragtrain.model.projection import DenseLayer, DenseStack, load_dense_modules, write_dense_modules


def save(projection: nn.Module, directory):
    directory.mkdir(exist_ok=True)
    entries = write_dense_modules(projection, directory, first_index=2)
    (directory / "modules.json").write_text(json.dumps(entries))
    return entries


def test_a_stack_with_activations_reads_back_as_the_same_function(tmp_path):
    torch.manual_seed(0)
    first, second = nn.Linear(8, 6), nn.Linear(6, 4, bias=False)
    entries = save(DenseStack([DenseLayer(first, nn.Tanh()), DenseLayer(second, nn.Identity())]), tmp_path)
    assert [e["path"] for e in entries] == ["2_Dense", "3_Dense"]
    config = json.loads((tmp_path / "2_Dense" / "config.json").read_text())
    assert config == {"in_features": 8, "out_features": 6, "bias": True,
                      "activation_function": "torch.nn.modules.activation.Tanh"}
    loaded = load_dense_modules(tmp_path)
    assert isinstance(loaded, DenseStack) and (loaded.in_features, loaded.out_features) == (8, 4)
    x = torch.randn(3, 8)  # (B, in_features)
    by_hand = torch.tanh(x @ first.weight.T + first.bias) @ second.weight.T  # (B, 4)
    assert torch.allclose(loaded(x), by_hand, atol=1e-6)


def test_one_linear_layer_is_ragtrains_own_head_and_no_dense_is_none(tmp_path):
    head = nn.Linear(8, 4)
    save(head, tmp_path / "head")
    loaded = load_dense_modules(tmp_path / "head")
    assert type(loaded) is nn.Linear and torch.equal(loaded.weight, head.weight) and torch.equal(loaded.bias, head.bias)
    (tmp_path / "plain").mkdir()
    assert load_dense_modules(tmp_path / "plain") is None  # no modules.json: a plain transformers directory
    (tmp_path / "plain" / "modules.json").write_text(json.dumps([{"path": "", "type": "x.Transformer"}]))
    assert load_dense_modules(tmp_path / "plain") is None


def test_an_activation_ragtrain_cannot_build_or_a_broken_folder_is_one_line(tmp_path):
    save(nn.Linear(8, 4), tmp_path)
    config_file = tmp_path / "2_Dense" / "config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps(config | {"activation_function": "my.package.Swish"}))
    with pytest.raises(UserError, match="activation 'my.package.Swish' is not a torch.nn module"):
        load_dense_modules(tmp_path)
    config_file.write_text(json.dumps(config))
    (tmp_path / "2_Dense" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(UserError, match="its Dense layer 2_Dense/ cannot be read") as error:
        load_dense_modules(tmp_path)
    assert "\n" not in str(error.value)
