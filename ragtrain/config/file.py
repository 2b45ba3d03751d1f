"""`--config FILE`: a command's options from a TOML, YAML or JSON file, checked against its config dataclass.

The file is one table (mapping) of options by field name (`learning_rate`), with dashes (`learning-rate`) or by
flag name where a flag is spelled otherwise (`k` for evaluate's k_values, `cache`, `resume_from`). Values have the
field's type, as config.json holds them (paths as strings, tuples as lists), or the text the flag reads
(`negative_range = "10-100"`, `k = "1,5,10"`, `report_to = "tensorboard,wandb"`). An unknown key or a value of the
wrong type is one UserError naming the key. Paths are read as on the command line: relative to the current folder.
cli.py lets every flag given on the command line win over the file, and the file win over the defaults.
"""

from __future__ import annotations

import difflib
import tomllib
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ragtrain.config.options import FieldFlags, Flag, flags_of
from ragtrain.errors import UserError
from ragtrain.files.jsonfiles import parse_json, read_utf8

SUFFIXES = (".toml", ".yaml", ".yml", ".json")


def read_config_file(path: Path, config_class: type, ignored: tuple[str, ...] = (),
                     upgrade: Callable[[dict], dict] | None = None) -> dict[str, Any]:
    """Each option the file sets, by field name, as the field's value. `ignored`: keys allowed and skipped (what
    a run's config.json records beside its options); `upgrade`: turns options an older ragtrain wrote into today's."""
    raw = _read_mapping(path)
    if upgrade is not None:
        raw = upgrade(raw)
    keys = _key_index(config_class)
    hints = typing.get_type_hints(config_class)
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        if name in ignored:
            continue
        if name not in keys:
            raise UserError(f"--config {path}: unknown option {key!r}{_suggestion(name, keys)}; the file may hold "
                            f"only the command's options (see --help)")
        field, flag = keys[name]
        if field.field in values:
            raise UserError(f"--config {path}: {field.field} is set twice (as {key!r} too); keep one")
        values[field.field] = _field_value(field, flag, hints[field.field], value, key, path)
    return values


def _read_mapping(path: Path) -> dict:
    if path.is_dir():
        raise UserError(f"--config {path} is a directory; pass the options file itself (a run's config.json, or a "
                        ".toml, .yaml or .json file)")
    if not path.is_file():
        raise UserError(f"--config {path} not found; check the path")
    if path.suffix.lower() not in SUFFIXES:
        raise UserError(f"--config {path}: unknown format; use a .toml, .yaml (.yml) or .json file")
    text = read_utf8(path, f"--config {path}: not UTF-8 text; save the file as UTF-8")
    suffix = path.suffix.lower()
    if suffix == ".json":
        data = parse_json(text, path)
    else:
        try:
            data = tomllib.loads(text) if suffix == ".toml" else yaml.safe_load(text)
        except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
            reason = " ".join(str(exc).split())
            raise UserError(f"--config {path}: not valid {suffix[1:].upper()} ({reason}); fix the file") from None
    if data is None:
        return {}  # an empty YAML file
    if not isinstance(data, dict):
        raise UserError(f"--config {path}: must hold a table of options (name = value), got {type(data).__name__}")
    return data


def _key_index(config_class: type) -> dict[str, tuple[FieldFlags, Flag | None]]:
    """Every spelling of an option, dashes as underscores: the field's name and each flag's own name and long flag
    name, with the flag it names (None: none)."""
    index: dict[str, tuple[FieldFlags, Flag | None]] = {}
    for field in flags_of(config_class):
        for flag in field.flags:
            names = [flag.name] + [d.split("/")[0][2:] for d in flag.decls if d.startswith("--")]
            for name in names:
                index.setdefault(name.replace("-", "_"), (field, flag))
        # the field's own name reads a field-level value first (and its flag's, for a field of several flags)
        index[field.field] = (field, next((f for f in field.flags if f.name == field.field), None))
    return index


def _suggestion(name: str, keys: dict) -> str:
    close = difflib.get_close_matches(name, list(keys), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _field_value(field: FieldFlags, flag: Flag | None, hint: Any, value: Any, key: str, path: Path) -> Any:
    """The field's value from the file's: typed as the field, or as the text its flag reads; a field with several
    flags (--resume, --resume-from) also takes any one flag's value, the others at their defaults."""
    text_form = isinstance(value, str) and any(f.type is str for f in field.flags) and hint is not str
    if text_form and len(field.flags) == 1:
        return field.parse(value)
    try:
        return _typed(hint, value)
    except TypeError as exc:
        problem = exc
    if len(field.flags) > 1 and flag is not None:
        try:
            return field.parse(*(_typed(f.type, value) if f is flag else f.default for f in field.flags))
        except TypeError:
            pass
    raise UserError(f"--config {path}: {key} must be {problem}, got {value!r}")


def _typed(hint: Any, value: Any) -> Any:
    """`value` as read from the file, in the type `hint`; TypeError naming what was expected."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _typed(options[0], value)
    if typing.get_origin(hint) in (tuple, list):
        return _sequence(hint, value)
    checks = {bool: (bool,), int: (int,), float: (int, float), str: (str,), Path: (str,)}
    names = {bool: "true or false", int: "an integer", float: "a number", str: "text", Path: "a path (text)"}
    if hint not in checks:
        raise TypeError(f"a {hint}")
    if hint is float and isinstance(value, str):  # YAML 1.1 reads 1e-5 (no dot) as text
        try:
            return float(value)
        except ValueError:
            raise TypeError(names[hint]) from None
    if not isinstance(value, checks[hint]) or (hint is not bool and isinstance(value, bool)):
        raise TypeError(names[hint])
    return hint(value)


def _sequence(hint: Any, value: Any) -> tuple:
    """A list (or one item, for a list of any length) as a tuple of the hint's item type."""
    args = typing.get_args(hint)
    variadic = typing.get_origin(hint) is list or (len(args) == 2 and args[1] is Ellipsis)
    if variadic and not isinstance(value, list):
        value = [value]
    if not isinstance(value, list) or (not variadic and len(value) != len(args)):
        raise TypeError(f"a list of {'' if variadic else f'{len(args)} '}values")
    items = [args[0]] * len(value) if variadic else list(args)
    try:
        return tuple(_typed(item, v) for item, v in zip(items, value))
    except TypeError as exc:
        raise TypeError(f"a list of {exc}") from None
