"""LoRA through peft: the transformer's weights stay frozen and low-rank adapters on its linear layers train.

A saved model is merged by default (the adapter folded into the weights: a normal model directory that loads
anywhere); --lora-save adapter keeps the adapter alone (adapter_config.json names the base model; transformers,
sentence-transformers with peft installed, and ragtrain load it). A checkpoint keeps the adapter beside its
merged model/, so that --resume carries on from the same base weights and adapter state.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from torch import nn

from ragtrain.errors import UserError

ADAPTER_DIR = "adapter"  # inside a checkpoint: the adapter that --resume puts back on the base model
ADAPTER_CONFIG = "adapter_config.json"


def _peft():
    try:
        import peft
    except ImportError:
        raise UserError("--lora-rank needs peft; install it with pip install 'ragtrain[lora]'") from None
    return peft


def add_lora(transformer: nn.Module, rank: int, alpha: float, dropout: float, targets: str | None) -> nn.Module:
    """The transformer wrapped with fresh LoRA adapters (peft's default targets for its architecture, or
    `targets`, comma-separated module names); only the adapters take gradients."""
    hidden = getattr(getattr(transformer, "config", None), "hidden_size", None)
    if isinstance(hidden, int) and rank > hidden:  # the update would be of full rank, and larger than the weights
        raise UserError(f"--lora-rank {rank} is above the model's hidden size {hidden}: an adapter of that rank is no "
                        f"low-rank update and holds more than the weights it adapts; pass at most {hidden} (8 to 64 is "
                        "usual)")
    peft = _peft()
    modules = [t.strip() for t in targets.split(",") if t.strip()] if targets else None
    config = peft.LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=modules, bias="none")
    try:
        return peft.get_peft_model(transformer, config)
    except (ValueError, TypeError, KeyError, NotImplementedError) as exc:
        kind = getattr(getattr(transformer, "config", None), "model_type", type(transformer).__name__)
        hint = ("pass --lora-target-modules with the names of its linear layers" if targets is None
                else "check --lora-target-modules against the model's linear layer names")
        raise UserError(f"--lora-rank: peft cannot wrap this {kind} model ({str(exc).splitlines()[0][:150]}); "
                        f"{hint}") from None


def is_lora(transformer: nn.Module) -> bool:
    return hasattr(transformer, "peft_config")


def merged_copy(transformer: nn.Module) -> nn.Module:
    """A plain transformers model with the adapters folded in; the one training goes on untouched."""
    return copy.deepcopy(transformer).merge_and_unload()


def save_adapter(transformer: nn.Module, directory: Path) -> None:
    transformer.save_pretrained(directory, safe_serialization=True)


def load_adapter(transformer: nn.Module, directory: Path, trainable: bool) -> nn.Module:
    """`transformer` (the base) with the adapter saved in `directory`; trainable for a resumed run."""
    return _peft().PeftModel.from_pretrained(transformer, str(directory), is_trainable=trainable)


def adapter_base(directory: Path) -> str | None:
    """The base model an adapter-only directory names (adapter_config.json and no config.json), else None."""
    if not (directory / ADAPTER_CONFIG).is_file() or (directory / "config.json").is_file():
        return None
    base = json.loads((directory / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    if not base:
        raise UserError(f"{directory / ADAPTER_CONFIG} names no base_model_name_or_path; save the adapter again")
    return base
