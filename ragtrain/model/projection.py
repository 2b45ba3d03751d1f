"""The Dense layers after pooling: ragtrain's linear head, or a sentence-transformers model's N_Dense/ folders
(several of them, each a Linear followed by an activation such as Tanh), read and written in its file format."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ragtrain.errors import UserError
from ragtrain.files.atomic import atomic_write_json

IDENTITY = "torch.nn.modules.linear.Identity"
DENSE_TYPE = "sentence_transformers.models.Dense"


class DenseLayer(nn.Module):
    """sentence-transformers' Dense: activation(linear(x)); its weights are saved as linear.weight, linear.bias."""

    def __init__(self, linear: nn.Linear, activation: nn.Module):
        super().__init__()
        self.linear = linear
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.linear(x))


class DenseStack(nn.Module):
    """Several Dense layers, or one with an activation: (B, in_features) -> (B, out_features)."""

    def __init__(self, layers: list[DenseLayer]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    @property
    def in_features(self) -> int:
        return self.layers[0].linear.in_features

    @property
    def out_features(self) -> int:
        return self.layers[-1].linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


def load_dense_modules(directory: Path) -> nn.Module | None:
    """The Dense layers modules.json lists, in order: None for none; one linear layer (no activation) as a plain
    nn.Linear, ragtrain's own head; anything else as a DenseStack."""
    modules_file = directory / "modules.json"
    if not modules_file.is_file():
        return None
    folders = [directory / m["path"] for m in json.loads(modules_file.read_text()) if m["type"].endswith(".Dense")]
    layers = []
    for folder in folders:
        try:
            layers.append(_load_layer(folder))
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - json, safetensors, torch and shape errors alike: the folder is broken
            raise UserError(f"model directory {directory}: its Dense layer {folder.name}/ cannot be read "
                            f"({type(exc).__name__}: {str(exc)[:120]}); save the model again or remove the broken files") from None
    if not layers:
        return None
    if len(layers) == 1 and isinstance(layers[0].activation, nn.Identity):
        return layers[0].linear
    return DenseStack(layers)


def _load_layer(folder: Path) -> DenseLayer:
    config = json.loads((folder / "config.json").read_text())
    in_features = config.get("in_features")
    out_features = config.get("out_features")
    linear = nn.Linear(in_features, out_features, bias=config.get("bias", True))
    weights = folder / "model.safetensors"
    state = load_file(weights) if weights.is_file() else torch.load(folder / "pytorch_model.bin", weights_only=True)
    linear.load_state_dict({k.removeprefix("linear."): v for k, v in state.items()})
    return DenseLayer(linear, activation_from_name(config.get("activation_function", IDENTITY), folder))


def activation_from_name(name: str, folder: Path) -> nn.Module:
    """A torch.nn activation named as sentence-transformers saves it (torch.nn.modules.activation.Tanh)."""
    module_class = getattr(nn, name.rsplit(".", 1)[-1], None) if name.startswith("torch.nn") else None
    if not (isinstance(module_class, type) and issubclass(module_class, nn.Module)):
        raise UserError(f"{folder}/config.json: activation {name!r} is not a torch.nn module ragtrain can build; "
                        "pass another model")
    try:
        return module_class()
    except TypeError:
        raise UserError(f"{folder}/config.json: activation {name!r} needs arguments ragtrain cannot know; "
                        "pass another model") from None


def write_dense_modules(projection: nn.Module, directory: Path, first_index: int) -> list[dict]:
    """Each layer in its own N_Dense/ folder as sentence-transformers writes it; their modules.json entries."""
    layers = projection.layers if isinstance(projection, DenseStack) else [DenseLayer(projection, nn.Identity())]
    entries = []
    for n, layer in enumerate(layers, start=first_index):
        folder = f"{n}_Dense"
        activation = type(layer.activation)
        atomic_write_json(directory / folder / "config.json", {
            "in_features": layer.linear.in_features, "out_features": layer.linear.out_features,
            "bias": layer.linear.bias is not None, "activation_function": f"{activation.__module__}.{activation.__name__}"})
        save_file({f"linear.{k}": v.detach().float().cpu().contiguous() for k, v in layer.linear.state_dict().items()},
                  directory / folder / "model.safetensors")
        entries.append({"idx": n, "name": str(n), "path": folder, "type": DENSE_TYPE})
    return entries
