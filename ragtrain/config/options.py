"""How a config field appears on the command line: its help, its flags, and how what they read becomes its value.

Each option is declared once, as a field of a config dataclass (config.py) made by `option(default, help)`; cli.py
builds a command's flags from `flags_of(ConfigClass)` and the config from what they read (and what a --config file
holds) with `build`. So adding an option is adding one field, and its default and help cannot drift apart between
the CLI and the code.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any

from ragtrain.errors import UserError


@dataclass(frozen=True)
class Flag:
    """One parameter of a command: what it reads, its default (MISSING: required) and help, and its names."""

    name: str  # the parameter's name; --name-with-dashes unless `decls` names it
    type: Any  # what the command line reads, e.g. int, Optional[Path], list[str]
    default: Any
    help: str
    decls: tuple[str, ...] = ()  # its flag names when not --name-with-dashes, e.g. ("--output-dir", "-o")
    argument: bool = False  # positional instead of a flag
    show_default: bool = True
    panel: str = ""  # the --help panel it is listed in: the concern it belongs to ("Loss", "Data and output", ...)


@dataclass(frozen=True)
class FieldFlags:
    """A config field and the parameters that set it: `parse(*their values)` is the field's value."""

    field: str
    flags: tuple[Flag, ...]
    parse: Callable[..., Any]


def option(default: Any = MISSING, help: str = "", *, panel: str = "", decls: tuple[str, ...] = (),
           argument: bool = False, show_default: bool = True, cli_type: Any = None, cli_default: Any = MISSING,
           parse: Callable[..., Any] | None = None, flags: tuple[Flag, ...] = (), cli: bool = True,
           recorded: bool = True) -> Any:
    """A config field with its default, help and --help panel. On the command line it is one parameter named after
    the field, of the field's type and default, unless told otherwise: `decls`, `argument`, `show_default`,
    `cli_type` and `cli_default` (what the command line reads and shows, e.g. "10-100" for (10, 100)) change that
    parameter; `flags` replaces it with several (listed in `panel` unless they name their own). `parse` turns what
    the parameters read into the field's value. cli=False: no parameter at all (the config sets the field itself).
    recorded=False: where the options came from rather than an option, so neither written with them
    (common.as_dict) nor compared."""
    metadata = {"help": help, "panel": panel, "decls": decls, "argument": argument, "show_default": show_default,
                "cli_type": cli_type, "cli_default": cli_default, "parse": parse, "flags": flags, "cli": cli,
                "recorded": recorded}
    return dataclasses.field(default=default, metadata=metadata, compare=recorded)


def flags_of(config_class: type) -> list[FieldFlags]:
    """Every field of `config_class` with its command-line parameters, in field order (the order --help shows)."""
    hints = typing.get_type_hints(config_class)
    result = []
    for field in dataclasses.fields(config_class):
        meta = field.metadata
        if not meta.get("cli", True):  # set by the config itself, never by a flag
            continue
        panel = meta.get("panel", "")
        flags = tuple(dataclasses.replace(flag, panel=flag.panel or panel) for flag in meta.get("flags", ())) or (Flag(
            name=field.name,
            type=meta.get("cli_type") or _optional(hints[field.name]),
            default=field.default if meta.get("cli_default", MISSING) is MISSING else meta["cli_default"],
            help=meta.get("help", ""), decls=meta.get("decls", ()), argument=meta.get("argument", False),
            show_default=meta.get("show_default", True), panel=panel),)
        result.append(FieldFlags(field.name, tuple(flags), meta.get("parse") or _same))
    return result


CONFIG_FILE_FIELD = "config_file"  # a config with this field (cli=False) records the --config file it was read from


def build(config_class: type, values: dict[str, Any], from_file: dict[str, Any] | None = None,
          given: frozenset[str] = frozenset(), config_file: Path | None = None) -> Any:
    """The config from what the command line read: `values` holds each parameter's value by name. A field set in
    `from_file` (a --config file, by field name) takes that value unless one of its parameters is in `given` (typed
    on the command line). A required parameter (default MISSING) reads None when not typed: it must come from
    one or the other. `config_file` (the --config file) goes into the CONFIG_FILE_FIELD of a config that has one:
    an input of that command, which no output of it may replace."""
    from_file = from_file or {}
    fields = {}
    for f in flags_of(config_class):
        if f.field in from_file and not any(flag.name in given for flag in f.flags):
            fields[f.field] = from_file[f.field]
            continue
        read = [values[flag.name] for flag in f.flags]
        for flag, value in zip(f.flags, read):
            if flag.default is MISSING and value in (None, [], ()):
                raise UserError(f"missing {flag_label(flag)}; give it on the command line or in --config FILE")
        fields[f.field] = f.parse(*read)
    if config_file is not None and any(f.name == CONFIG_FILE_FIELD for f in dataclasses.fields(config_class)):
        fields[CONFIG_FILE_FIELD] = config_file
    return config_class(**fields)


def flag_label(flag: Flag) -> str:
    """How --help names a parameter: --output-dir, or MODELS for a positional one."""
    if flag.argument:
        return flag.name.upper()
    return flag.decls[0].split("/")[0] if flag.decls else f"--{flag.name.replace('_', '-')}"


def _same(value: Any) -> Any:
    return value


def _optional(hint: Any) -> Any:
    """`X | None` as typing.Optional[X], the spelling Typer reads."""
    if isinstance(hint, types.UnionType):
        return typing.Union[typing.get_args(hint)]
    return hint
