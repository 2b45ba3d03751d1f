"""The report's figures as PNG bytes, drawn with matplotlib's Agg renderer on Figure objects (no pyplot, so no
process-wide backend or open-figure state). What each figure shows comes from reportdata.py.
"""

from __future__ import annotations

import io
import math

from ragtrain.reporting.pagedata import Bar, Panel

PANEL_SIZE = (4.6, 3.0)  # inches per subplot
COLUMNS = 3
DPI = 100
LABELS = {  # y-axis labels of the logged keys
    "grad_norm": "norm", "triples_per_s": "triples / s", "tokens_per_s": "tokens / s", "memory_mb": "MB",
    "cos_positive": "cosine", "cos_hardest_negative": "cosine", "embedding_std": "mean per-dimension std",
    "mean_pairwise_cos": "cosine", "val_loss": "loss",
}
TITLES = {
    "loss": "loss (what is minimised)", "loss_q2d": "loss: queries -> documents",
    "loss_d2q": "loss: documents -> queries (--symmetric)", "loss_isotropy": "loss: isotropy (SIGReg, unweighted)",
    "grad_norm": "gradient norm before clipping", "triples_per_s": "throughput: triples / s",
    "tokens_per_s": "throughput: tokens / s (no padding)", "memory_mb": "peak memory",
    "cos_positive": "mean cosine, query - positive", "cos_hardest_negative": "mean cosine, query - hardest negative",
    "embedding_std": "embedding std (normalised)", "mean_pairwise_cos": "isotropy: mean pairwise cosine",
    "val_loss": "validation loss",
}
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")  # a run's marker, so lines that coincide stay told apart


def title_of(key: str) -> str:
    """A logged key as a subplot title: lr_base_no_decay -> 'learning rate: base, no decay'."""
    if key in TITLES:
        return TITLES[key]
    if key.startswith("lr_"):
        group = key.removeprefix("lr_").replace("no_decay", "no decay").replace("_", ", ")
        return f"learning rate: {group}"
    return key


def label_of(key: str) -> str:
    if key.startswith("lr"):
        return "learning rate"
    return LABELS.get(key, "loss" if key.startswith("loss") else key)


def _figure(rows: int, columns: int, size: tuple[float, float]):
    from matplotlib.figure import Figure  # imported here: matplotlib is an optional extra

    return Figure(figsize=(size[0] * columns, size[1] * rows), dpi=DPI, layout="constrained")


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})  # no version stamp: same data, same bytes
    return buffer.getvalue()


def curves_png(panels: list[Panel], title: str, run_order: list[str]) -> bytes:
    """One subplot per panel, a line per run (the same colour for a run in every subplot), a legend of the runs."""
    return _png(curves_figure(panels, title, run_order))


def curves_figure(panels: list[Panel], title: str, run_order: list[str]):
    """The matplotlib Figure that curves_png draws."""
    from matplotlib.ticker import MaxNLocator

    columns = min(COLUMNS, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = _figure(rows, columns, PANEL_SIZE)
    figure.suptitle(title, fontsize=13)
    colours = {name: f"C{n % 10}" for n, name in enumerate(run_order)}
    markers = {name: MARKERS[n % len(MARKERS)] for n, name in enumerate(run_order)}
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, panel in zip(axes, panels):
        for name, (steps, values) in panel.lines.items():
            every = max(1, len(steps) // 12)  # a dozen markers a line at most
            ax.plot(steps, values, color=colours[name], marker=markers[name], markevery=every, markersize=4,
                    linewidth=1.4, alpha=0.85, label=name)
        ax.set_title(title_of(panel.key), fontsize=10)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole: no tick at 2.5
        ax.set_ylabel(label_of(panel.key))
        ax.grid(alpha=0.3)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    from matplotlib.lines import Line2D

    legend = [Line2D([], [], color=colours[name], marker=markers[name], label=name) for name in run_order]
    figure.legend(handles=legend, loc="outside lower center", ncols=min(len(run_order), 4), fontsize=9)
    return figure


def eval_png(chart: dict[str, list[Bar]], title: str) -> bytes:
    """A bar chart per metric: a bar per model (each evaluation's models together, a gap and a line between
    evaluations), its value and its change against its evaluation's first model above it."""
    metrics = [m for m, bars in chart.items() if bars]
    columns = min(2, len(metrics))
    rows = math.ceil(len(metrics) / columns)
    longest = max(len(bar.model) for bars in chart.values() for bar in bars)
    widest = max(len(chart[m]) for m in metrics)
    figure = _figure(rows, columns, (max(5.0, 0.8 * widest + 2), 3.0 + 0.05 * min(longest, 40)))
    figure.suptitle(title, fontsize=13)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, metric in zip(axes, metrics):
        bars = chart[metric]
        positions = bar_positions(bars)
        colours = ["#7f7f7f" if bar.change is None else "#2ca02c" if bar.change >= 0 else "#d62728" for bar in bars]
        ax.bar(positions, [bar.value for bar in bars], color=colours)
        top = max(bar.value for bar in bars)
        for x, bar in zip(positions, bars):
            text = f"{bar.value:.4f}" + ("" if bar.change is None else f"\n{bar.change:+.4f}")
            ax.text(x, bar.value + 0.01 * max(top, 1e-9), text, ha="center", va="bottom", fontsize=8)
        for n in range(1, len(bars)):
            if bars[n].group != bars[n - 1].group:  # midway through the gap between two evaluations
                ax.axvline(positions[n] - 0.8, color="#999", linestyle=":", linewidth=1)
        ax.set_ylim(0, top * 1.22 if top > 0 else 1)
        ax.set_xticks(positions, [_short(bar.model) for bar in bars], rotation=20, ha="right", fontsize=8)
        ax.set_title(metric, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    return _png(figure)


def bar_positions(bars: list[Bar]) -> list[float]:
    """x of each bar: one apart, and 0.6 more where the next evaluation's bars start."""
    positions, x = [], 0.0
    for n, bar in enumerate(bars):
        if n and bar.group != bars[n - 1].group:
            x += 0.6
        positions.append(x)
        x += 1
    return positions


def _short(name: str, width: int = 40) -> str:
    """A long model path keeps its end, which names it."""
    return name if len(name) <= width else "…" + name[-(width - 1):]
