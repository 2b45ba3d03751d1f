"""Train's defaults by the kind of triples it is given: labelled (prepare-data --pairs or --beir: queries a person
wrote, judged relevant) or label-free (made from documents alone). prepare-data's manifest.json, beside the triples
file, says which (data.manifest reads it); the sets below are where the figures behind them come from. Filling a
config's unset options in is pure: the command reads the manifest once and hands the kind in.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

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
class DataKind:
    """The kind of a triples file, and where that was read (for the line train prints)."""

    kind: str | None  # LABELLED, LABEL_FREE, or None when no manifest says (the label-free set then applies)
    source: str

    @property
    def defaults(self) -> dict:
        return LABELLED_DEFAULTS if self.kind == LABELLED else LABEL_FREE_DEFAULTS


def data_kind_of(options: dict) -> str:
    """The kind prepare-data made, from its options: labelled sources are --pairs and --beir."""
    return LABELLED if options.get("pairs") or options.get("beir") else LABEL_FREE


def with_kind_defaults(config, kind: DataKind):
    """`config` (a TrainConfig, or tune's) with each option of SEARCHED left unset (None) set to the kind's default,
    --grad-cache left unset resolved (grad_cache_default), and `defaulted` naming them."""
    unset = tuple(name for name in SEARCHED if getattr(config, name) is None)
    changes = {name: kind.defaults[name] for name in unset}
    if getattr(config, "grad_cache", False) is None:
        changes["grad_cache"] = grad_cache_default(config)
        unset += ("grad_cache",) if changes["grad_cache"] else ()
    if not changes:
        return config
    return dataclasses.replace(config, **changes, defaulted=tuple(dict.fromkeys(config.defaulted + unset)))


def grad_cache_default(config) -> bool:
    """GradCache unless --grad-accum-steps bounds the memory instead: a batch of 32 triples with 4 hard negatives at
    256 tokens peaks at 8.8 GB on a CPU in one pass and at 2.6 GB in micro-batches (SciFact, scripts/README.md), for
    the same gradient; the price is one more forward pass (about a third more time). Either kind of triples."""
    return config.grad_accum_steps == 1


def defaults_line(defaulted: tuple[str, ...], kind: DataKind) -> str | None:
    """The line train prints: which set gave the options left unset, and why; None when every one was given."""
    if not defaulted:
        return None
    values = ", ".join("--grad-cache" if name == "grad_cache" else f"--{name.replace('_', '-')} {kind.defaults[name]:g}"
                       for name in defaulted)
    if kind.kind is None:
        return f"defaults: {values} (today's label-free set: {kind.source} says what kind the triples are)"
    return f"defaults for {kind.kind} triples ({kind.source}): {values}"
