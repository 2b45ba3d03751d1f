"""report(config): training runs, evaluation results and tune studies as one self-contained HTML page, its plots
beside it (the reporting wing draws them)."""

from __future__ import annotations

from pathlib import Path

from ragtrain.commands.preflight import check_report
from ragtrain.config.report import ReportConfig
from ragtrain.errors import UserError
from ragtrain.files.atomic import atomic_directory, atomic_write_text
from ragtrain.reporting.page import (
    Figure,
    check_plots_dir,
    eval_figures,
    page,
    read_metrics,
    read_results,
    read_run_config,
    run_figures,
    study_sections,
)


def report(config: ReportConfig, extra: list[tuple[str, Path]] = ()) -> Path:
    """Write the page (and its PNGs); return its path. `extra`: more (title, PNG file) sections, after the rest."""
    config.validate()
    check_report(config)
    runs = {str(run): read_metrics(run) for run in config.runs}
    configs = {str(run): read_run_config(run) for run in config.runs}
    results = [read_results(path) for path in config.evals]
    figures = run_figures(runs) + eval_figures(results, [path.stem for path in config.evals])
    for n, (title, path) in enumerate([*study_sections(config.studies), *extra]):
        if not path.is_file():
            raise UserError(f"extra figure {path} not found")
        figures.append(Figure(title, f"extra-{n + 1}-{path.name}", path.read_bytes()))
    check_plots_dir(config.plots_dir)
    with atomic_directory(config.plots_dir, overwrite=True) as tmp:
        for figure in figures:
            (tmp / figure.file_name).write_bytes(figure.png)
    atomic_write_text(config.output, page(config.title, figures, results, [p.stem for p in config.evals], configs))
    return config.output
