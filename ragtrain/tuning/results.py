"""What a tune study leaves in its directory: the results table (printed, results.csv, results.json), best/ (a copy of
the best trial's model), plots, and with --keep-best K only the best K trials' model folders."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ragtrain.config.tune import TuneConfig
from ragtrain.errors import UserError
from ragtrain.files.atomic import atomic_directory, atomic_write_json, atomic_write_text
from ragtrain.files.names import AVERAGED, BEST, CHECKPOINTS, FINAL, STUDY_RESULTS, STUDY_TABLE, TRIALS
from ragtrain.messages import tell, warn
from ragtrain.tuning.space import Param
from ragtrain.tuning.study import KILLED, fail_killed

MODEL_FOLDERS = (BEST, FINAL, CHECKPOINTS, AVERAGED)  # a trial's weights; its logs and config stay
SHORT = {"learning_rate": "lr", "temperature": "temp", "warmup_ratio": "warmup", "seconds": "s"}  # table headers


def finish_study(optuna, study, config: TuneConfig, space: tuple[Param, ...]) -> Path:
    """The table printed and written, best/ copied from the best finished trial, the plots drawn. A study in which
    no trial completed is a UserError (after its table is written) that says why the trials failed."""
    fail_killed(optuna, study)  # a trial another process of this host left running when it was killed
    rows = result_rows(optuna, study, space)
    metric = study.user_attrs.get("metric") or "value"
    Console().print(results_table(rows, space, config.study))
    write_results(config.output_dir, rows)
    best = best_trial(optuna, study)
    if best is not None:
        source = model_of(Path(best.user_attrs["dir"]))
        if source is not None:
            with atomic_directory(config.output_dir / BEST, overwrite=True) as tmp:
                shutil.copytree(source, tmp, dirs_exist_ok=True)
            tell(f"best: trial {best.number}, {metric} {best.value:.4f}; its model copied to {config.output_dir / 'best'}")
    try:
        from ragtrain.tuning.studyplots import write_plots

        write_plots(rows, [p.name for p in space], config.output_dir, study.direction.name == "MAXIMIZE")
    except ImportError:
        warn("no plots: matplotlib is not installed (pip install 'ragtrain[tune]')")
    if best is None:
        raise UserError(no_trial_completed(rows, config.output_dir))
    return config.output_dir


def no_trial_completed(rows: list[dict], directory: Path) -> str:
    """The line of a study without a complete trial: how many failed and the first error, where the table is."""
    failed = [r for r in rows if r["state"] in ("FAIL", KILLED.upper())]
    errors = [r["error"] for r in failed if r["error"]]
    why = f"; the first error: {errors[0]}" if errors else ""
    return (f"no trial of the study completed ({len(failed)} failed, {len(rows) - len(failed)} other){why}; every "
            f"trial is in {directory / STUDY_TABLE}: fix what failed and run tune again")

def best_trial(optuna, study):
    """The best COMPLETE trial, or None before any has completed."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return study.best_trial if complete else None


def model_of(run_dir: Path) -> Path | None:
    """A trial run's model: best/ (kept by validation), else final/."""
    return next((run_dir / name for name in (BEST, FINAL) if (run_dir / name / "config.json").is_file()), None)


def result_rows(optuna, study, space: tuple[Param, ...]) -> list[dict]:
    """One row per trial: number, state, value, each searched option, steps trained, seconds, its directory."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start \
            else None
        value = t.value if t.state == optuna.trial.TrialState.COMPLETE else t.user_attrs.get("best")
        state = KILLED.upper() if t.user_attrs.get(KILLED) else t.state.name  # a FAIL whose process was killed
        rows.append({"trial": t.number, "state": state, "value": value,
                     **{p.name: t.params.get(p.name) for p in space},
                     "steps": t.user_attrs.get("steps"), "seconds": seconds, "dir": t.user_attrs.get("dir"),
                     "error": t.user_attrs.get("error") or ("its process was killed" if state == KILLED.upper() else None)})
    return rows


def results_table(rows: list[dict], space: tuple[Param, ...], study: str) -> Table:
    """value: the trial's best validation figure (for a pruned trial, its best before it was stopped)."""
    table = Table(title=f"tune study {study!r}: {len(rows)} trials")
    for name in ("trial", "state", "value", *(p.name for p in space), "steps", "seconds"):
        table.add_column(SHORT.get(name, name), justify="left" if name == "state" else "right", no_wrap=True)
    for row in rows:
        table.add_row(*(_cell(row[name]) for name in ("trial", "state", "value", *(p.name for p in space), "steps")),
                      "" if row["seconds"] is None else f"{row['seconds']:.0f}")
    return table


def _cell(value) -> str:
    """A table cell: small and huge numbers in 4 significant digits (a learning rate of 1e30 is '1e+30', not 31
    digits), others with 4 decimals, or whole above 100."""
    if value is None:
        return ""
    if isinstance(value, float):
        size = abs(value)
        return f"{value:.4g}" if size < 1e-3 or size >= 1e6 else f"{value:.4f}" if size < 100 else f"{value:.0f}"
    return str(value)


def write_results(directory: Path, rows: list[dict]) -> None:
    """results.json and results.csv (the same rows), written atomically."""
    atomic_write_json(directory / STUDY_RESULTS, rows)
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    atomic_write_text(directory / STUDY_TABLE, buffer.getvalue())


def keep_best_models(optuna, study, config: TuneConfig) -> None:
    """With --keep-best K: the weights of every finished trial outside the best K are deleted. Only finished
    trials' folders inside this study directory are touched (a running trial of another process never is), and
    best/ of the study is a copy, so the best trial's model survives whatever happens here."""
    if not config.keep_best:
        return
    states = optuna.trial.TrialState
    finished = [t for t in study.get_trials(deepcopy=False) if t.state in (states.COMPLETE, states.PRUNED, states.FAIL)]
    ranked = sorted((t for t in finished if t.state == states.COMPLETE), key=lambda t: t.value,
                    reverse=study.direction.name == "MAXIMIZE")
    kept = {t.number for t in ranked[:config.keep_best]}
    trials_dir = (config.output_dir / TRIALS).resolve()
    for trial in finished:
        run_dir = Path(trial.user_attrs.get("dir", "")).resolve()
        if trial.number in kept or not run_dir.is_relative_to(trials_dir) or run_dir == trials_dir:
            continue
        for name in MODEL_FOLDERS:
            shutil.rmtree(run_dir / name, ignore_errors=True)
