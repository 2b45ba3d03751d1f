"""tune's search space: which train options a trial draws, and from what range.

The default space is learning rate (log-uniform), epochs, temperature (log-uniform) and warmup ratio; the --*-range
flags move its bounds (one value fixes an option), a space file (JSON or TOML) replaces it, and a train option given
to tune explicitly is fixed at that value. Everything is checked before the first trial.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragtrain.config.train import TrainConfig
from ragtrain.config.tune import RANGE_FLAGS, TUNE_NOT_FROM_TRAIN
from ragtrain.errors import UserError

TYPES = ("float", "int", "categorical")


@dataclass(frozen=True)
class Param:
    """One searched option: a float or int range (log: sampled log-uniformly), or a list of choices."""

    name: str  # a train option, e.g. learning_rate
    type: str  # float, int or categorical
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple = ()


DEFAULT_SPACE = (
    Param("learning_rate", "float", 1e-5, 2e-4, log=True),
    Param("epochs", "int", 1, 3),
    Param("temperature", "float", 0.02, 0.1, log=True),
    Param("warmup_ratio", "float", 0.0, 0.3),
)


def search_space(config) -> tuple[Param, ...]:
    """The space a TuneConfig asks for: its --space file, or the default space with its --*-range bounds; minus
    the options given to tune explicitly (each fixed at its value). Every value a trial may draw is one train
    takes with the study's other options (check_values), so no trial fails on its options."""
    if config.space is not None:
        space = read_space_file(config.space)
        where = {p.name: f"search space file {config.space}, option {p.name!r}" for p in space}
    else:
        bounds = {RANGE_FLAGS[flag]: getattr(config, flag) for flag in RANGE_FLAGS if getattr(config, flag)}
        space = tuple(dataclasses.replace(p, low=bounds[p.name][0], high=bounds[p.name][1]) if p.name in bounds else p
                      for p in DEFAULT_SPACE)
        where = {p.name: f"--{_flag_of(p.name)}" for p in space}
        for p in space:
            check_param(p, where[p.name])
    searched = tuple(p for p in space if not _fixed(config, p.name, where[p.name]))
    for p in searched:
        check_values(p, config.trial_config(), where[p.name])
    return searched


def _fixed(config, name: str, where: str) -> bool:
    """Whether train option `name` was given to tune (it then differs from train's default), fixing it. A range
    flag or a space file that searches the same option contradicts that, and is refused rather than ignored."""
    default = next(f.default for f in dataclasses.fields(TrainConfig) if f.name == name)
    value = getattr(config, name)
    if value == default:
        return False
    if config.space is not None or getattr(config, _flag_of(name).replace("-", "_")) is not None:
        flag = "--" + name.replace("_", "-")
        raise UserError(f"{flag} {value} fixes {name}, which {where} searches; drop one of them")
    return True


def check_values(p: Param, trial: TrainConfig, where: str) -> None:
    """Each choice, or both ends of a range, set into a trial's options must pass train's own checks: a range or
    choice train refuses (--warmup-range 0,1.5, epochs 0, a loss it does not know) is one line before any trial."""
    hint = typing.get_type_hints(TrainConfig)[p.name]
    if p.type == "float" and not _fits(hint, 0.5):
        raise UserError(f"{where}: {p.name} takes whole numbers; search it with type int")
    values = p.choices or ((math.ceil(p.low), math.floor(p.high)) if p.type == "int" else (p.low, p.high))
    for value in values:
        if not _fits(hint, value):
            raise UserError(f"{where}: {value!r} is not a value of {p.name} ({_type_name(hint)}); fix the search space")
        try:
            dataclasses.replace(trial, **{p.name: value}).validate()
        except UserError as exc:
            raise UserError(f"{where}: {p.name} {value!r} is refused by train ({exc}); fix the search space") from None


def _fits(hint: Any, value: Any) -> bool:
    """Whether `value` (from a space file or a range) has a type the field `hint` takes."""
    kinds = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if value is None:
        return type(None) in kinds
    if isinstance(value, bool):
        return bool in kinds
    if isinstance(value, int):
        return int in kinds or float in kinds
    return any(isinstance(value, kind) for kind in kinds if isinstance(kind, type) and kind is not type(None))


def _type_name(hint: Any) -> str:
    kinds = typing.get_args(hint) or (hint,)
    return " or ".join(getattr(k, "__name__", str(k)) for k in kinds)


def read_space_file(path: Path) -> tuple[Param, ...]:
    """A JSON or TOML file of name -> {type, low, high, log, choices}, checked."""
    try:
        text = path.read_text(encoding="utf-8")
        content = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"search space file {path} cannot be read as {'TOML' if path.suffix == '.toml' else 'JSON'}: "
                        f"{str(exc).splitlines()[0]}; fix the file") from None
    if not isinstance(content, dict) or not content:
        raise UserError(f"search space file {path} must map option names to {{type, low, high, log, choices}}; "
                        "it is empty or not a mapping")
    space = []
    for name, spec in content.items():
        where = f"search space file {path}, option {name!r}"
        if not isinstance(spec, dict):
            raise UserError(f"{where}: give {{type, low, high, log, choices}}, got {spec!r}")
        unknown = set(spec) - {"type", "low", "high", "log", "choices"}
        if unknown:
            raise UserError(f"{where}: unknown key {sorted(unknown)[0]!r}; use type, low, high, log, choices")
        param = Param(name, spec.get("type", "categorical" if "choices" in spec else "float"), spec.get("low"),
                      spec.get("high"), bool(spec.get("log", False)), tuple(spec.get("choices") or ()))
        check_param(param, where)
        space.append(param)
    return tuple(space)


def check_param(p: Param, where: str) -> None:
    """An option train has and tune may vary, of a type that fits it, with a range that holds a value."""
    hints = typing.get_type_hints(TrainConfig)
    names = {f.name for f in dataclasses.fields(TrainConfig)} - set(TUNE_NOT_FROM_TRAIN) - {"train_data", "model"}
    if p.name not in names:
        raise UserError(f"{where}: {p.name!r} is not a train option that tune can search; use one of "
                        "learning_rate, epochs, temperature, warmup_ratio, weight_decay, batch_size, ... "
                        "(train's flags with _ for -)")
    if p.type not in TYPES:
        raise UserError(f"{where}: type must be float, int or categorical, got {p.type!r}")
    if p.type == "categorical":
        if not p.choices:
            raise UserError(f"{where}: a categorical option needs a non-empty 'choices' list")
        return
    kind = typing.get_args(hints[p.name]) or (hints[p.name],)
    if float not in kind and int not in kind:
        raise UserError(f"{where}: {p.name} is not a number; search it as categorical with 'choices'")
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (p.low, p.high)):
        raise UserError(f"{where}: give numbers 'low' and 'high' for a {p.type} range")
    if p.low > p.high:
        raise UserError(f"{where}: the range {p.low:g}..{p.high:g} is empty (low above high); swap them")
    if p.log and p.low <= 0:
        raise UserError(f"{where}: a log range must start above 0, got low {p.low:g}")
    if p.type == "int" and math.floor(p.high) < math.ceil(p.low):
        raise UserError(f"{where}: the integer range {p.low:g}..{p.high:g} holds no integer")


def suggest(trial, space: tuple[Param, ...]) -> dict[str, Any]:
    """One trial's values for the searched options (Optuna's trial.suggest_*; a fixed range gives its value)."""
    values = {}
    for p in space:
        if p.type == "categorical":
            values[p.name] = trial.suggest_categorical(p.name, list(p.choices))
        elif p.type == "int":
            values[p.name] = trial.suggest_int(p.name, math.ceil(p.low), math.floor(p.high), log=p.log)
        else:
            values[p.name] = trial.suggest_float(p.name, p.low, p.high, log=p.log)
    return values


def _flag_of(name: str) -> str:
    """The --*-range flag that sets a default-space option's bounds."""
    return next(flag for flag, option in RANGE_FLAGS.items() if option == name).replace("_", "-")
