"""What the commands' options share: the default model, devices, weight dtypes, the seed's range, the text-option
checks and help, and a config as JSON-ready data."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ragtrain.config.options import flags_of
from ragtrain.errors import UserError
from ragtrain.model.settings import TextOptions

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
SEED_LIMIT = 2**32  # numpy's generators take seeds in [0, 2**32)
DEVICES = ("auto", "cpu", "cuda", "mps")
MIN_LENGTH = 8  # the fewest words a passage, or tokens a text, may be cut to: below it little meaning is left
DEFAULT_HYBRID_WEIGHT = 0.2  # of BM25's z-score against the dense model's: 0.7419 dev nDCG@10 on SciFact (README)
WEIGHT_DTYPES = ("fp32", "bf16", "fp16")  # --dtype: what the weights are loaded in
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # --precision of train and evaluate: what the forward passes compute in


def require(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(message)


def check_seed(seed: int) -> None:
    require(0 <= seed < SEED_LIMIT, f"--seed must be in [0, {SEED_LIMIT - 1}] (numpy's range), got {seed}")


def as_dict(config) -> dict:
    """A config as JSON-ready data (paths as strings, tuples as lists)."""

    def plain(value):
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        return value

    return {f.name: plain(getattr(config, f.name)) for f in dataclasses.fields(config)
            if f.metadata.get("recorded", True)}


def changed_flags(config, names: tuple[str, ...]) -> list[str]:
    """The flags (as --help spells them, --no-x for a switched-off --x/--no-x) of those of `names` whose value
    differs from the field's default: what a user gave, for a check that refuses options another one ignores."""
    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    decls = {field.field: field.flags[0].decls for field in flags_of(type(config))}
    flags = []
    for name in names:
        value = getattr(config, name)
        if value == defaults[name]:
            continue
        spellings = (decls.get(name) or (f"--{name.replace('_', '-')}",))[0].split("/")
        flags.append(spellings[1] if value is False and len(spellings) > 1 else spellings[0])
    return flags


def check_text_options(options: TextOptions, dtype: str = "fp32") -> None:
    """What train, evaluate and prepare-data's dense model share: the prompts, the length and the weights' dtype."""
    for flag, prompt in (("--query-prompt", options.query_prompt), ("--document-prompt", options.document_prompt)):
        require(prompt is None or "\n" not in prompt, f"{flag} holds a line break; pass the prompt on one line")
    require(options.max_length is None or options.max_length >= MIN_LENGTH,
            f"--max-seq-length must be at least {MIN_LENGTH}, got {options.max_length}")
    require(dtype in WEIGHT_DTYPES, f"--dtype must be fp32, bf16 or fp16, got {dtype!r}")


def check_precision_name(precision: str) -> None:
    require(precision in PRECISIONS, f"--precision must be auto, fp32, bf16 or fp16, got {precision!r}")


QUERY_PROMPT_HELP = "Put before every query, e.g. 'query: ' for e5 (default: the model's own prompt, else none)."
DOCUMENT_PROMPT_HELP = "Put before every passage, e.g. 'passage: ' for e5 (default: the model's own, else none)."
DTYPE_HELP = "The weights' own dtype: fp32, bf16 (native bf16 hardware) or fp16 (CUDA), e.g. for large LLM embedders."
PRECISION_HELP = ("What the model computes in (autocast): fp32, bf16, fp16 (CUDA) or auto (bf16 where the hardware "
                  "has it natively, else fp32).")
