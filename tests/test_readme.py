"""The README leads and stays short: under 450 lines, its results table gives each figure's command (a script that
exists), every extra it tells users to pip install exists, and the full benchmark record it links to is there."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_the_readme_stays_under_450_lines_and_leads_with_the_two_commands():
    assert len(README.splitlines()) < 450
    headings = [line for line in README.splitlines() if line.startswith("## ")]
    assert headings[:4] == ["## Two commands", "## The commands", "## File formats", "## Results"]


def test_every_results_row_names_the_script_that_measured_it():
    section = README.split("## Results", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| what")]
    assert len(rows) >= 8
    for row in rows:
        scripts = re.findall(r"`python (scripts/\w+\.py)[^`]*`", row)
        assert scripts and all((ROOT / script).is_file() for script in scripts), row
    assert (ROOT / "scripts" / "README.md").is_file() and "scripts/README.md" in section


def test_every_extra_the_readme_names_exists():
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    named = set(re.findall(r"ragtrain\[([a-z0-9-]+)\]", README))
    assert named and named <= extras, named - extras


def test_the_layout_section_names_every_wing_and_every_module():
    section = README.split("## How the code is laid out", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    words = set(re.findall(r"[a-z_0-9]+(?:\.py|/)?", section))
    package = ROOT / "ragtrain"
    for wing in sorted(p for p in package.iterdir() if (p / "__init__.py").is_file()):
        assert f"{wing.name}/" in words, wing.name
        modules = {m.stem for m in wing.glob("*.py")} - {"__init__"}
        assert modules <= words, (wing.name, modules - words)
    top = {m.name for m in package.glob("*.py")}
    assert top <= words, top - words
