"""Options: a field declared once gives the flag's name, type, default and help, and builds the config back."""

from __future__ import annotations

from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Optional

from ragtrain.config.options import Flag, build, flags_of, option


def _pair(first: bool, second: str | None) -> str:
    return f"{first}/{second}"


@dataclass(frozen=True)
class Example:
    source: Path = option(help="Where from.", decls=("--source", "-s"))
    size: int = option(3, "How many.")
    ratio: float | None = option(None, "A fraction.")
    ranks: tuple[int, int] = option((1, 9), "First and last.", cli_type=str, cli_default="1-9",
                                    parse=lambda text: tuple(int(v) for v in text.split("-")))
    names: tuple[str, ...] = option((), "Positional.", argument=True, cli_type=list[str], parse=tuple)
    combined: str | None = option(None, parse=_pair, flags=(Flag("first", bool, False, "One."),
                                                            Flag("second", Optional[str], None, "Two.")))


def test_each_field_is_one_flag_of_its_type_default_and_help_unless_told_otherwise():
    fields = {f.field: f for f in flags_of(Example)}
    assert list(fields) == ["source", "size", "ratio", "ranks", "names", "combined"]  # field order: --help's
    (source,) = fields["source"].flags
    assert source == Flag("source", Path, MISSING, "Where from.", ("--source", "-s"))
    assert fields["size"].flags == (Flag("size", int, 3, "How many."),)
    assert fields["ratio"].flags[0].type == Optional[float]  # `float | None` spelled as Typer reads it
    assert fields["ranks"].flags == (Flag("ranks", str, "1-9", "First and last."),)
    assert fields["names"].flags[0].argument and fields["names"].flags[0].type == list[str]
    assert [flag.name for flag in fields["combined"].flags] == ["first", "second"]


def test_the_config_is_built_from_what_each_flag_read():
    values = {"source": Path("in"), "size": 4, "ratio": 0.5, "ranks": "2-5", "names": ["a", "b"], "first": True,
              "second": "x"}
    assert build(Example, values) == Example(Path("in"), 4, 0.5, (2, 5), ("a", "b"), "True/x")
