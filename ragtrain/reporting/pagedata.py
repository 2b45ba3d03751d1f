"""The data behind each plot and table of `ragtrain report`, as pure functions of what runs and evaluations wrote
(metrics.jsonl rows, config.json, evaluate's results JSON). plots.py draws them; nothing here draws or reads files.
"""

from __future__ import annotations

from dataclasses import dataclass

# The training figure's keys, each logged key that is one of these or starts with one and '_' (loss_q2d, lr_head_decay)
TRAINING_PANELS = ("loss", "lr", "grad_norm", "triples_per_s", "tokens_per_s", "memory_mb")
DIAGNOSTIC_PANELS = ("cos_positive", "cos_hardest_negative", "embedding_std", "mean_pairwise_cos")
NOT_PLOTTED = {"step", "epoch"}
EVAL_METRICS = ("ndcg@10", "recall@10", "mrr@10", "map@100", "recall@100")  # the chart's metrics, when measured

Series = tuple[list[int], list[float]]  # steps, values


@dataclass(frozen=True)
class Panel:
    """One subplot: a logged key, and each run's (steps, values) of it, runs in the order given."""

    key: str
    lines: dict[str, Series]


def is_validation_row(row: dict) -> bool:
    """metrics.jsonl holds two kinds of rows: a training step's (with its loss) and a validation's (without)."""
    return "loss" not in row


def series(rows: list[dict], key: str) -> Series:
    """The (steps, values) of `key` over the rows that hold a number for it, in order; a repeated step (a
    resumed run logs again from its checkpoint) keeps its last value."""
    by_step: dict[int, float] = {}
    for row in rows:
        value = row.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            by_step[row["step"]] = float(value)
    steps = sorted(by_step)
    return steps, [by_step[s] for s in steps]


def panel_keys(runs: dict[str, list[dict]], validation: bool, wanted: tuple[str, ...] | None) -> list[str]:
    """The keys to plot, in first-seen order: from training rows whose key is (or starts with) one in `wanted`,
    or, for validation, every key of the validation rows."""
    keys: dict[str, None] = {}
    for rows in runs.values():
        for row in rows:
            if is_validation_row(row) != validation:
                continue
            for key, value in row.items():
                if key in NOT_PLOTTED or not isinstance(value, (int, float)) or isinstance(value, bool):
                    continue
                if wanted is None or any(key == w or key.startswith(w + "_") for w in wanted):
                    keys[key] = None
    if wanted is None:
        return list(keys)
    # grouped as `wanted` orders them, each group's plain key (the total loss) before its parts
    return sorted(keys, key=lambda k: next((i, k != w) for i, w in enumerate(wanted) if k == w or k.startswith(w + "_")))


def panels(runs: dict[str, list[dict]], validation: bool = False, wanted: tuple[str, ...] | None = None) -> list[Panel]:
    """One panel per key, each run's line in it (a run that never logged the key has none)."""
    result = []
    for key in panel_keys(runs, validation, wanted):
        lines = {}
        for name, rows in runs.items():
            steps, values = series([r for r in rows if is_validation_row(r) == validation], key)
            if steps:
                lines[name] = (steps, values)
        result.append(Panel(key, lines))
    return result


@dataclass(frozen=True)
class Bar:
    model: str
    value: float
    change: float | None  # against the first model of its evaluation; None for the first
    group: int = 0  # which evaluation (results file) it comes from


def eval_metrics(results: list[dict]) -> list[str]:
    """The metrics to chart: EVAL_METRICS that some model measured; else the first four a model has."""
    measured = [m for r in results for model in r["models"].values() for m in model.get("metrics", {})]
    chosen = [m for m in EVAL_METRICS if m in measured]
    return chosen or list(dict.fromkeys(measured))[:4]


def eval_bars(results: list[dict], labels: list[str]) -> dict[str, list[Bar]]:
    """For each charted metric, a bar per model of each evaluation (labelled `label: model` when there are
    several evaluations), with its change against the first model of that evaluation."""
    chart: dict[str, list[Bar]] = {}
    for metric in eval_metrics(results):
        bars = []
        for group, (label, result) in enumerate(zip(labels, results)):
            models = list(result["models"].items())
            first = models[0][1].get("metrics", {}).get(metric) if models else None
            for n, (model, measured) in enumerate(models):
                value = measured.get("metrics", {}).get(metric)
                if value is None:
                    continue
                name = f"{label}: {model}" if len(results) > 1 else model
                bars.append(Bar(name, value, None if n == 0 or first is None else value - first, group))
        chart[metric] = bars
    return chart


def options_table(configs: dict[str, dict]) -> list[tuple[str, list, bool]]:
    """The runs' options side by side: (option, each run's value (None where absent), whether they differ); the
    options that differ first, since they are what tells the runs apart, each group in the first run's order
    (options only later runs have after it)."""
    names = list(dict.fromkeys(name for config in configs.values() for name in config))
    rows = []
    for name in names:
        values = [config.get(name) for config in configs.values()]
        rows.append((name, values, any(v != values[0] for v in values)))
    return sorted(rows, key=lambda row: not row[2])
