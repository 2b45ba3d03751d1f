"""report's options: one frozen ReportConfig. validate() reads no disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ragtrain.config.common import require
from ragtrain.config.options import option

# -------------------------------------------------------------------------------------------------- report
INPUTS, OUTPUT = "Runs, results and studies", "Output"  # --help panels
@dataclass(frozen=True)
class ReportConfig:
    runs: tuple[Path, ...] = option(
        (), "Training run directories (what 'ragtrain train' wrote: metrics.jsonl, config.json), overlaid in every "
        "plot.", panel=INPUTS, argument=True, cli_type=Optional[list[Path]], cli_default=None, show_default=False,
        parse=lambda paths: tuple(paths or ()))
    evals: tuple[Path, ...] = option((), "A results file from 'ragtrain evaluate --output'; repeat --eval for "
        "several. Charted per metric and model, with the change against each file's first model.", panel=INPUTS,
        decls=("--eval",),
        cli_type=Optional[list[Path]], cli_default=None, show_default=False, parse=lambda paths: tuple(paths or ()))
    studies: tuple[Path, ...] = option((), "A study directory from 'ragtrain tune'; repeat --study for several. Its "
        "plots (the metric against each searched option, the best value over trials) join the page.",
        panel=INPUTS, decls=("--study",), cli_type=Optional[list[Path]], cli_default=None, show_default=False,
        parse=lambda paths: tuple(paths or ()))
    output: Path = option(Path("report.html"), "The HTML page (self-contained: its plots are embedded); the plots "
        "are also written as PNG files to <name>_plots/ beside it.", panel=OUTPUT, decls=("--output", "-o"))
    title: str = option("ragtrain report", "The page's title.", panel=OUTPUT)
    # the --config file read: an input no output may replace (options.build sets it)
    config_file: Path | None = option(None, cli=False, recorded=False)

    @property
    def plots_dir(self) -> Path:
        return self.output.with_name(self.output.stem + "_plots")

    def validate(self) -> "ReportConfig":
        require(bool(self.runs or self.evals or self.studies), "nothing to report; pass training run directories, "
               "--eval RESULTS.json (from 'ragtrain evaluate --output') and/or --study DIR (from 'ragtrain tune')")
        for flag, paths in (("run", self.runs), ("--eval", self.evals)):
            repeated = sorted({str(p) for p in paths if paths.count(p) > 1})
            require(not repeated, f"{flag} {repeated[0]} is given twice; pass each once" if repeated else "")
        return self
