"""Plots of a tune study (matplotlib, Agg): the metric against each searched option, and the best value over trials.
`write_plots` returns each PNG's path and title, for a report to show them."""

from __future__ import annotations

import math
from pathlib import Path

from ragtrain.files.atomic import temp_name
from ragtrain.files.jsonfiles import read_json
from ragtrain.files.names import STUDY_RESULTS

LOG_SCALE = {"learning_rate", "temperature", "base_learning_rate", "head_learning_rate"}


def write_plots(rows: list[dict], params: list[str], directory: Path, maximize: bool = True) -> list[tuple[Path, str]]:
    """tune_params.png (one panel per option: each finished trial's value, pruned ones hollow) and tune_history.png
    (each trial's value in order and the best so far), written atomically; [(path, title)]."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    scored = [r for r in rows if r["value"] is not None and math.isfinite(r["value"])]
    written = []
    if params:
        fig, axes = plt.subplots(1, len(params), figsize=(3.2 * len(params), 3), squeeze=False, sharey=True)
        drawn = False
        for ax, name in zip(axes[0], params):
            for state, face in (("COMPLETE", "C0"), ("PRUNED", "none")):
                points = [(r[name], r["value"]) for r in scored if r["state"] == state and r[name] is not None]
                if points:
                    ax.scatter(*zip(*points), facecolors=face, edgecolors="C0", label=state.lower())
                    drawn = True
            ax.set_xlabel(name)
            if name in LOG_SCALE and drawn:  # a log axis with nothing on it is matplotlib's warning
                ax.set_xscale("log")
        axes[0][0].set_ylabel("validation metric")
        if drawn:  # a legend of nothing is matplotlib's warning too
            axes[0][0].legend(fontsize="small")
        written.append(_save(fig, directory / "tune_params.png", "Validation metric against each searched option"))
    fig, ax = plt.subplots(figsize=(5, 3))
    ordered = sorted((r for r in scored if r["state"] == "COMPLETE"), key=lambda r: r["trial"])
    if ordered:
        best, running = [], None
        for r in ordered:
            running = r["value"] if running is None else (max if maximize else min)(running, r["value"])
            best.append(running)
        ax.plot([r["trial"] for r in ordered], [r["value"] for r in ordered], "o", label="trial")
        ax.step([r["trial"] for r in ordered], best, where="post", label="best so far")
        ax.legend(fontsize="small")
    ax.set_xlabel("trial")
    ax.set_ylabel("validation metric")
    written.append(_save(fig, directory / "tune_history.png", "Best validation metric over trials"))
    return written


def write_study_plots(study_dir: Path, maximize: bool = True) -> list[tuple[Path, str]]:
    """The plots of a tune study directory, from its results.json (for `ragtrain report`); [(path, title)].
    The searched options are the columns between `value` and `steps`; maximize=False for a val_loss study."""
    rows = read_json(study_dir / STUDY_RESULTS)
    columns = list(rows[0]) if rows else []
    params = columns[columns.index("value") + 1:columns.index("steps")] if rows else []
    return write_plots(rows, params, study_dir, maximize)


def _save(fig, path: Path, title: str) -> tuple[Path, str]:
    """The figure as PNG under a temporary name, renamed into place."""
    from matplotlib import pyplot as plt

    fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    tmp = temp_name(path)
    fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path, title
