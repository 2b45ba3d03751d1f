"""Train's defaults by the kind of triples it is given: labelled (prepare-data --pairs or --beir: queries a person
wrote, judged relevant) or label-free (made from documents alone). prepare-data's manifest.json, beside the triples
file, says which; the sets below are where the figures behind them come from.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ragtrain.files.names import MANIFEST

LABELLED, LABEL_FREE = "labelled", "label-free"
SEARCHED = ("learning_rate", "epochs", "temperature", "warmup_ratio")  # what the defaults below set

# label-free: the rate that helped titles and crops on SciFact (1e-5 0.6820, 2e-5 0.6805, 5e-5 0.6640) and one epoch
# (more label-free steps moved the model away from what the dev claims need); README Results.
LABEL_FREE_DEFAULTS = {"learning_rate": 2e-5, "epochs": 1, "temperature": 0.05, "warmup_ratio": 0.1}
# labelled: the best measured on SciFact's train claims, validated on its dev claims: 8e-5 for 2 epochs (dev nDCG@10
# 0.7476; 3e-5 0.7042, 5e-5 0.7319). An hour's `ragtrain tune` study there (scripts/bench_tune.py, README Results:
# 4 trials at one thread) found nothing better on the whole dev corpus (its best 0.7136).
LABELLED_DEFAULTS = {"learning_rate": 8e-5, "epochs": 2, "temperature": 0.05, "warmup_ratio": 0.1}


@dataclass(frozen=True)
class DataDefaults:
    kind: str | None  # LABELLED, LABEL_FREE, or None when no manifest says
    values: dict  # option name -> default
    source: str  # where the kind was read, for the line train prints


def data_kind_of(options: dict) -> str:
    """The kind prepare-data made, from its options: labelled sources are --pairs and --beir."""
    return LABELLED if options.get("pairs") or options.get("beir") else LABEL_FREE


def defaults_for(train_data: Path) -> DataDefaults:
    """The default set for a triples file, by the `data_kind` of the manifest.json beside it (a manifest written
    before that field existed: by its options); without a readable manifest, the label-free set."""
    manifest = Path(train_data).parent / MANIFEST
    try:
        content = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return DataDefaults(None, LABEL_FREE_DEFAULTS, f"no readable {manifest}")
    if not isinstance(content, dict):
        return DataDefaults(None, LABEL_FREE_DEFAULTS, f"{manifest} is not a prepare-data manifest")
    kind = content.get("data_kind")
    if kind not in (LABELLED, LABEL_FREE):
        kind = data_kind_of(content.get("options") if isinstance(content.get("options"), dict) else {})
    values = LABELLED_DEFAULTS if kind == LABELLED else LABEL_FREE_DEFAULTS
    return DataDefaults(kind, values, str(manifest))


def defaults_line(defaulted: tuple[str, ...], train_data: Path) -> str | None:
    """The line train prints: which set gave the options left unset, and why; None when every one was given."""
    if not defaulted:
        return None
    found = defaults_for(train_data)
    values = ", ".join(f"--{name.replace('_', '-')} {found.values[name]:g}" for name in defaulted)
    if found.kind is None:
        return f"defaults: {values} (today's label-free set: {found.source} says what kind the triples are)"
    return f"defaults for {found.kind} triples ({found.source}): {values}"
