"""report(config): training runs and evaluation results as one self-contained HTML page, its plots beside it.

The page holds, in order: the runs' training curves (loss parts, learning rates, gradient norm, throughput, memory),
their step diagnostics, their validation metrics (runs overlaid in each), a chart per metric of each evaluated model
with its change against the first, the evaluation figures as a table, and the runs' options side by side with the
differences marked. Each plot is a PNG in <output stem>_plots/ and embedded in the page as base64, so the page
alone can be mailed or archived. Other parts (a tuning study's plot) join as extra (title, PNG file) sections.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ragtrain.errors import UserError, quoted
from ragtrain.files.jsonfiles import read_json
from ragtrain.files.names import METRICS_LOG, RUN_CONFIG, TRIALS
from ragtrain.messages import warn
from ragtrain.reporting.pagedata import (
    DIAGNOSTIC_PANELS,
    TRAINING_PANELS,
    eval_bars,
    eval_metrics,
    options_table,
    panels,
)
from ragtrain.reporting.plots import curves_png, eval_png
from ragtrain.tuning.studyplots import write_study_plots

STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1400px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}img{max-width:100%;border:1px solid #eee}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}tr.differs{background:#fff3c4}.up{color:#17801f}.down{color:#c0262d}
p.caption{color:#555;font-size:.9em}"""
GENERATOR = "<meta name='generator' content='ragtrain report'>"  # how a later report knows the page is one of its own
OLD_PAGE_START = "<style>body{font-family:system-ui,sans-serif;"  # pages written before GENERATOR was added


@dataclass(frozen=True)
class Figure:
    title: str
    file_name: str  # in the plots folder
    png: bytes
    caption: str = ""


# ------------------------------------------------------------------------------------------------------ inputs
def study_sections(studies: tuple[Path, ...]) -> list[tuple[str, Path]]:
    """Each tune study's plots, drawn afresh from its results.json, as (title, PNG) sections; a study whose trials
    chose by validation loss is minimised."""
    sections = []
    for study in studies:
        trial_configs = sorted((study / TRIALS).glob(f"trial-*/{RUN_CONFIG}"))
        metric = read_json(trial_configs[0]).get("metric") if trial_configs else None
        plots = write_study_plots(study, maximize=metric != "val_loss")
        sections += [(f"{title} ({study})", path) for path, title in plots]
    return sections


def read_metrics(run: Path) -> list[dict]:
    """metrics.jsonl's rows; a last line a kill cut short is skipped, any other bad line (or value that is not a
    number) is the user's to fix, and a log without a row is one line too. NaN and infinite values (a skipped
    step's loss) are kept, drawn as gaps, and counted in a warning."""
    path = run / METRICS_LOG
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    rows, not_finite = [], Counter()
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except ValueError:
            if number == len(lines):
                continue
            raise UserError(f"{path}:{number}: not valid JSON; is this a ragtrain run?") from None
        if not isinstance(row, dict) or not isinstance(row.get("step"), int):
            raise UserError(f"{path}:{number}: a row without a step; is this a ragtrain run?")
        for key, value in row.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise UserError(f"{path}:{number}: {key} is {quoted(value)}, not a number; is this a ragtrain run?")
            if isinstance(value, float) and not math.isfinite(value):
                not_finite[key] += 1
        rows.append(row)
    if not rows:
        raise UserError(f"{path} holds no row; pass a run that has logged at least its first validation or step")
    if not_finite:
        warn(f"{path}: {sum(not_finite.values())} values are not finite ("
             + ", ".join(f"{key} {n}" for key, n in sorted(not_finite.items())) + "); they are gaps in the plots")
    return rows


def read_run_config(run: Path) -> dict:
    path = run / RUN_CONFIG
    config = read_json(path) if path.is_file() else {}
    if not isinstance(config, dict):
        raise UserError(f"{path}: not a JSON object of options; is this a ragtrain run?")
    return config


def read_results(path: Path) -> dict:
    """An evaluate --output file: its models, each with a map of metric -> number (checked, so that a value that is
    not one is one line instead of a traceback while drawing)."""
    results = read_json(path)
    models = results.get("models") if isinstance(results, dict) else None
    if not isinstance(models, dict) or not all(isinstance(m, dict) and isinstance(m.get("metrics"), dict)
                                               for m in models.values()):
        raise UserError(f"--eval {path}: no models with metrics in it; pass a file 'ragtrain evaluate --output' wrote")
    for model, measured in models.items():
        for metric, value in measured["metrics"].items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise UserError(f"--eval {path}: model {quoted(model)} has {metric} {quoted(value)}, not a finite "
                                "number; pass a file 'ragtrain evaluate --output' wrote")
    return results


def check_plots_dir(plots_dir: Path) -> None:
    """The plots folder is replaced whole, so it may hold only what a report put there."""
    if plots_dir.is_dir() and any(p.suffix != ".png" or p.is_dir() for p in plots_dir.iterdir()):
        raise UserError(f"{plots_dir} holds files that are not a report's plots; move them or choose another --output")


def is_report_page(path: Path) -> bool:
    """Whether `path` is a page `ragtrain report` wrote (which a new report may replace)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(4096).decode("utf-8", errors="replace")
    except OSError:
        return False
    return head.startswith("<!DOCTYPE html>") and (GENERATOR in head or OLD_PAGE_START in head)


# ----------------------------------------------------------------------------------------------------- figures
def run_figures(runs: dict[str, list[dict]]) -> list[Figure]:
    """Training curves, diagnostics and validation metrics, each figure only when some run logged its numbers."""
    order = list(runs)
    groups = [
        ("Training curves", "training.png", panels(runs, wanted=TRAINING_PANELS),
         "Each logged step: the mean since the previous one of the loss and its parts and of the gradient norm "
         "before clipping, throughput over those steps, the learning rate of each parameter group at the step, "
         "and peak memory."),
        ("Embedding diagnostics", "diagnostics.png", panels(runs, wanted=DIAGNOSTIC_PANELS),
         "Read from each step's embeddings, means as above: positives' and hardest negatives' cosine (their gap is the "
         "margin learned), the spread of the normalised embeddings, and their mean pairwise cosine (0: spread "
         "evenly; 1: all alike)."),
        ("Validation", "validation.png", panels(runs, validation=True),
         "Each validation, step 0 being the base model."),
    ]
    return [Figure(title, name, curves_png(found, title, order), caption)
            for title, name, found, caption in groups if found]


def eval_figures(results: list[dict], labels: list[str]) -> list[Figure]:
    if not results or not eval_metrics(results):
        return []
    chart = eval_bars(results, labels)
    return [Figure("Evaluation", "evaluation.png", eval_png(chart, "Evaluation"),
                   "Each metric per model; under each value, its change against the first model of its evaluation "
                   "(green: better or equal, red: worse).")]


def page(title: str, figures: list[Figure], results: list[dict], labels: list[str], configs: dict[str, dict]) -> str:
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>{GENERATOR}<title>{html.escape(title)}</title>"
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    if configs:
        parts.append("<p>Runs: " + ", ".join(f"<code>{html.escape(name)}</code>" for name in configs) + "</p>")
    for figure in figures:
        data = base64.b64encode(figure.png).decode("ascii")
        parts.append(f"<h2>{html.escape(figure.title)}</h2><p class='caption'>{html.escape(figure.caption)}</p>"
                     f"<img alt='{html.escape(figure.title)}' src='data:image/png;base64,{data}'>")
    for label, result in zip(labels, results):
        parts.append(eval_table(label, result))
    if configs:
        parts.append(options_html(configs))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def eval_table(label: str, result: dict) -> str:
    """The evaluation's charted metrics per model, each with its change against the first model."""
    metrics = eval_metrics([result])
    models = list(result["models"].items())
    first = models[0][1]["metrics"] if models else {}
    data = result.get("data", {})
    precisions = sorted({str(m["precision"]) for _, m in models if m.get("precision")})
    encoded = f"; dense models encoded in {' and '.join(precisions)}" if precisions else ""
    rows = [f"<h2>Evaluation: {html.escape(label)}</h2><p class='caption'>{html.escape(str(data.get('eval_data', '')))}"
            f", split {html.escape(str(data.get('split', '')))}: {data.get('queries', '?')} queries, "
            f"{data.get('corpus', '?')} documents{html.escape(encoded)}</p><table><tr><th>model</th>"
            + "".join(f"<th>{html.escape(m)}</th>" for m in metrics) + "</tr>"]
    for n, (model, measured) in enumerate(models):
        cells = []
        for metric in metrics:
            value = measured["metrics"].get(metric)
            change = "" if n == 0 or value is None or metric not in first else value - first[metric]
            note = "" if change == "" else f" <span class='{'up' if change >= 0 else 'down'}'>{change:+.4f}</span>"
            cells.append(f"<td class='num'>{'' if value is None else f'{value:.4f}'}{note}</td>")
        rows.append(f"<tr><td>{html.escape(model)}</td>{''.join(cells)}</tr>")
    return "".join(rows) + "</table>"


def options_html(configs: dict[str, dict]) -> str:
    """Every option of every run, side by side: the ones that differ between the runs in the open, marked; the
    rest (all of them for a single run) folded away, one click to open."""
    table = options_table(configs)
    header = "<table><tr><th>option</th>" + "".join(f"<th>{html.escape(name)}</th>" for name in configs) + "</tr>"

    def rows(chosen: list) -> str:
        return "".join(f"<tr{' class=differs' if differs else ''}><td>{html.escape(name)}</td>"
                       + "".join(f"<td>{html.escape(json.dumps(v))}</td>" for v in values) + "</tr>"
                       for name, values, differs in chosen)

    differing = [row for row in table if row[2]]
    shared = [row for row in table if not row[2]]
    parts = ["<h2>Options</h2>"]
    if len(configs) > 1:
        parts.append(f"<p class='caption'>{len(differing)} option(s) differ between the runs</p>")
        if differing:
            parts.append(header + rows(differing) + "</table>")
    noun = "option" if len(shared) == 1 else "options"
    what = f"{noun} the runs share" if len(configs) > 1 else f"{noun} of the run (its config.json)"
    if shared:
        parts.append(f"<details><summary>the {len(shared)} {what}</summary>{header}{rows(shared)}</table></details>")
    return "".join(parts)
