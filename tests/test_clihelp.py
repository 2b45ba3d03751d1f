"""--help at 80 columns: each command's options in panels by concern, every help text at least 40 characters wide,
train's under 200 lines, and what the source says to pip install printed as written (not eaten as rich markup)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragtrain.cli import app
from ragtrain.config.evaluate import EvaluateConfig
from ragtrain.config.merge import MergeConfig
from ragtrain.config.options import flags_of
from ragtrain.config.prepare import PrepareConfig
from ragtrain.config.report import ReportConfig
from ragtrain.config.train import TrainConfig
from ragtrain.config.tune import TuneConfig

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ("prepare-data", "train", "evaluate", "tune", "merge", "report")
CONFIGS = (PrepareConfig, TrainConfig, EvaluateConfig, TuneConfig, MergeConfig, ReportConfig)
MIN_HELP_WIDTH = 40
runner = CliRunner()


def help_at(command: str, columns: int) -> list[str]:
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def as_prose(lines: list[str]) -> str:
    """The help's text without the panels' edges, lines joined: what a reader sees, wrapping undone."""
    return " ".join(" ".join(line.strip("│ ") for line in lines).split())


def option_rows(lines: list[str]) -> list[str]:
    """The panels' lines that start an option: '│ --name ...' or '│ MODELS...'."""
    return [line for line in lines if re.match(r"│ (--|[A-Z]+\.\.\.)", line)]


@pytest.mark.parametrize("command", COMMANDS)
def test_at_80_columns_every_help_text_keeps_40_characters(command):
    lines = help_at(command, 80)
    assert max(len(line) for line in lines) <= 80
    rows = option_rows(lines)
    assert len(rows) >= 5
    for row in rows:
        names_end = re.match(r"│ \S+(?:,? \S+)*?\s{2,}", row) or re.match(r"│ \S+(?: [A-Z]+)?\s+", row)
        help_starts = names_end.end()
        assert 80 - 2 - help_starts >= MIN_HELP_WIDTH, row  # 2: the panel's right edge and its padding


def test_train_help_is_grouped_by_concern_and_under_200_lines():
    lines = help_at("train", 80)
    assert len(lines) < 200
    panels = [re.match(r"╭─ (.+?) ─", line).group(1) for line in lines if line.startswith("╭─")]
    assert panels == ["Data and output", "Model and text", "Loss", "Optimisation and schedule",
                      "Batches, memory and device", "Validation and checkpoints", "Logging", "Distributed (torchrun)",
                      "LoRA and Matryoshka", "Other options"]


def test_a_switch_is_one_name_and_an_option_shows_what_it_reads():
    lines = help_at("train", 80)
    assert any(line.startswith("│ --[no-]normalize ") for line in lines)
    assert any(line.startswith("│ --learning-rate FLOAT ") for line in lines)
    assert any(line.startswith("│ --output-dir, -o PATH ") for line in lines)
    assert not any("--no-normalize  " in line for line in lines)  # no column of its own for the negation


def test_every_extra_the_source_names_exists_and_help_prints_it_verbatim():
    """`pip install 'ragtrain[lora]'` once printed as `pip install 'ragtrain'`: rich read [lora] as markup."""
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    named = {name for path in (ROOT / "ragtrain").rglob("*.py")
             for name in re.findall(r"ragtrain\[([a-z0-9-]+)\]", path.read_text())}
    assert named and named <= extras, named - extras
    shown = " ".join(as_prose(help_at(command, 80)) for command in COMMANDS)
    helps = " ".join(flag.help for config in CONFIGS for field in flags_of(config) for flag in field.flags)
    in_help = set(re.findall(r"'ragtrain\[[a-z0-9-]+\]'", helps))  # what the options' help texts name
    assert len(in_help) >= 4
    for extra in in_help:
        assert extra in shown, extra


def test_text_that_looks_like_markup_prints_as_written():
    shown = as_prose(help_at("evaluate", 80))
    assert '{"queries": {id: text}, "corpus": {id: text}, "relevant_docs": {query_id: [doc_id, ...]}}' in shown
    assert "qrels/<split>.tsv" in shown
