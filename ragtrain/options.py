"""How a config field appears on the command line: its help, its flags, and how what they read becomes its value.

Each option is declared once, as a field of a config dataclass (config.py) made by `option(default, help)`; cli.py
builds a command's flags from `flags_of(ConfigClass)` and the config from what they read with `build`. So adding an
option is adding one field, and its default and help cannot drift apart between the CLI and the code.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass
from typing import Any


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


@dataclass(frozen=True)
class FieldFlags:
    """A config field and the parameters that set it: `parse(*their values)` is the field's value."""

    field: str
    flags: tuple[Flag, ...]
    parse: Callable[..., Any]


def option(default: Any = MISSING, help: str = "", *, decls: tuple[str, ...] = (), argument: bool = False,
           show_default: bool = True, cli_type: Any = None, cli_default: Any = MISSING,
           parse: Callable[..., Any] | None = None, flags: tuple[Flag, ...] = (), cli: bool = True) -> Any:
    """A config field with its default and help. On the command line it is one parameter named after the field,
    of the field's type and default, unless told otherwise: `decls`, `argument`, `show_default`, `cli_type` and
    `cli_default` (what the command line reads and shows, e.g. "10-100" for (10, 100)) change that parameter;
    `flags` replaces it with several. `parse` turns what the parameters read into the field's value. cli=False:
    no parameter at all (the config sets the field itself)."""
    metadata = {"help": help, "decls": decls, "argument": argument, "show_default": show_default,
                "cli_type": cli_type, "cli_default": cli_default, "parse": parse, "flags": flags, "cli": cli}
    return dataclasses.field(default=default, metadata=metadata)


def flags_of(config_class: type) -> list[FieldFlags]:
    """Every field of `config_class` with its command-line parameters, in field order (the order --help shows)."""
    hints = typing.get_type_hints(config_class)
    result = []
    for field in dataclasses.fields(config_class):
        meta = field.metadata
        if not meta.get("cli", True):  # set by the config itself, never by a flag
            continue
        flags = meta.get("flags") or (Flag(
            name=field.name,
            type=meta.get("cli_type") or _optional(hints[field.name]),
            default=field.default if meta.get("cli_default", MISSING) is MISSING else meta["cli_default"],
            help=meta.get("help", ""), decls=meta.get("decls", ()), argument=meta.get("argument", False),
            show_default=meta.get("show_default", True)),)
        result.append(FieldFlags(field.name, tuple(flags), meta.get("parse") or _same))
    return result


def build(config_class: type, values: dict[str, Any]) -> Any:
    """The config from what the command line read: `values` holds each parameter's value by name."""
    return config_class(**{f.field: f.parse(*(values[flag.name] for flag in f.flags)) for f in flags_of(config_class)})


def _same(value: Any) -> Any:
    return value


def _optional(hint: Any) -> Any:
    """`X | None` as typing.Optional[X], the spelling Typer reads."""
    if isinstance(hint, types.UnionType):
        return typing.Union[typing.get_args(hint)]
    return hint
