"""How `ragtrain COMMAND --help` lays out a command: usage, what it does, then its options in one panel per concern
(each option's panel is its config field's, config/options.py), two columns to a panel: the option's names with what
it reads, and its help.

Typer's own layout gives a switch two columns (`--normalize` and `--no-normalize`) and its type a third, which at 80
columns leaves a help text 20 characters; here a switch is one name, `--[no-]normalize` (git's spelling), and what an
option reads follows its name (`--learning-rate FLOAT`), so every help text keeps at least 40 characters. Help texts
are printed as plain text, never read as rich markup: `pip install 'ragtrain[lora]'` shows as written.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from typer.core import TyperCommand

NAME_COLUMN_MAX = 30  # the names column's widest: at 80 columns the help column keeps 76 - 2 - 30 = 44 characters
OTHER_OPTIONS = "Other options"  # --config and --help, and any option without a panel of its own
METAVARS = {"int": "INT", "float": "FLOAT", "Path": "PATH", "str": "TEXT"}  # by the type Typer reads


class PanelledHelpCommand(TyperCommand):
    """A Typer command whose --help is `help_page`."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        Console(highlight=False).print(help_page(self, ctx))


def _is_argument(param: Any) -> bool:
    return param.param_type_name == "argument"


def option_names(param: Any) -> str:
    """How the names column shows a parameter: `MODELS...`, `--[no-]normalize`, `--output-dir, -o PATH`."""
    if _is_argument(param):
        return param.name.upper() + ("..." if param.nargs != 1 else "")
    long = [o for o in param.opts if o.startswith("--")]
    short = [o for o in param.opts if not o.startswith("--")]
    if param.is_flag and param.secondary_opts:
        negation = param.secondary_opts[0]
        names = ([f"--[no-]{long[0][2:]}"] if negation == f"--no-{long[0][2:]}" else [long[0], negation]) + short
        return ", ".join(names)
    shown = ", ".join(long + short)
    kind = param.bare_type().removeprefix("list[").removesuffix("]")  # a repeatable option reads one at a time
    return shown if param.is_flag else f"{shown} {METAVARS.get(kind, kind.upper())}"


def default_text(param: Any) -> str:
    """` [default: 32]`, or nothing for an option that is off, unset or empty by default, or hides its default."""
    value = param.default
    if not getattr(param, "show_default", True) or value is None or value is False or value in ((), []):
        return ""
    if value is True:
        return " [default: on]"
    return f" [default: {format(value, 'g') if isinstance(value, float) else value}]"


def panels_of(command: Any, ctx: Any) -> dict[str, list[Any]]:
    """The command's parameters by panel, panels in the order their first parameter comes, the rest last."""
    panels: dict[str, list[Any]] = {}
    for param in command.get_params(ctx):
        panels.setdefault(getattr(param, "rich_help_panel", None) or OTHER_OPTIONS, []).append(param)
    panels[OTHER_OPTIONS] = panels.pop(OTHER_OPTIONS, [])
    return {name: params for name, params in panels.items() if params}


def _row(param: Any) -> tuple[Text, Text]:
    names = option_names(param)
    name, _, metavar = names.rpartition(" ") if " " in names and not param.is_flag else (names, "", "")
    shown = Text(name, style="bold cyan") + (Text(" " + metavar, style="yellow") if metavar else Text())
    return shown, Text(param.help or "") + Text(default_text(param), style="dim")


def help_page(command: Any, ctx: Any) -> Group:
    """Usage, the command's help (its first paragraph in bold), and a panel per concern."""
    panels = panels_of(command, ctx)
    width = min(NAME_COLUMN_MAX, max(len(option_names(p)) for params in panels.values() for p in params))
    first, _, rest = (command.help or "").partition("\n\n")
    parts = [Text(f"\n{command.get_usage(ctx)}\n", style="bold"),
             Text(" ".join(first.split()), style="bold")]
    if rest.strip():
        parts.append(Text("\n" + rest.strip(), style="dim"))
    parts.append(Text())
    for name, params in panels.items():
        table = Table(show_header=False, box=None, padding=(0, 1), pad_edge=False, expand=True)
        table.add_column(width=width, overflow="fold")
        table.add_column(ratio=1)
        for param in params:
            table.add_row(*_row(param))
        parts.append(Panel(table, title=name, title_align="left", border_style="dim"))
    return Group(*parts)
