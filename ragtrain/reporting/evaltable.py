"""Reports of an evaluation: the side-by-side table, and TREC run files."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from rich.table import Table

from ragtrain.retrieval.hybrid import HYBRID_PREFIX

HEADLINE_K = 10  # the cut-off papers report nDCG and MRR at


def headline_k(k_values: tuple[int, ...]) -> int:
    """The cut-off shown for rank-sensitive metrics: HEADLINE_K when asked, else the largest."""
    return HEADLINE_K if HEADLINE_K in k_values else max(k_values)


def results_table(results: dict, k_values: tuple[int, ...]) -> Table:
    """One row per model; every row after the first shows its change against the first."""
    k = headline_k(k_values)
    columns = [f"ndcg@{k}", f"mrr@{k}", *(f"recall@{cut}" for cut in sorted(k_values))]
    data = results["data"]
    excluded = f", {data['excluded_queries']} without relevant documents left out" if data["excluded_queries"] else ""
    table = Table(title=f"Retrieval on {results['queries']} queries, {results['corpus']} documents{excluded}")
    table.add_column("model", overflow="fold")
    for column in columns:
        table.add_column(column, justify="right")
    table.add_column("seconds", justify="right")
    base = None
    for model, result in results["models"].items():
        values = [result["metrics"][c] for c in columns]
        cells = [f"{v:.4f}" if base is None else f"{v:.4f}\n{v - b:+.4f}" for v, b in zip(values, base or values)]
        table.add_row(display_name(model), *cells, f"{result['timings']['total_s']:.1f}")
        base = base or values
    precisions = sorted({r["precision"] for r in results["models"].values() if r.get("precision")})
    if precisions:  # say how dense models were encoded: bf16 numbers can differ from fp32 in the 4th decimal
        table.caption = f"dense models encoded in {', '.join(precisions)} (--precision)"
    return table




def display_name(model: str) -> str:
    """A short label: a hub name's model part, or a path's last two parts (run/final); hybrid:MODEL keeps its prefix."""
    if model.startswith(HYBRID_PREFIX):
        return HYBRID_PREFIX + display_name(model[len(HYBRID_PREFIX):])
    parts = Path(model.rstrip("/")).parts
    return "/".join(parts[-2:]) if len(parts) > 1 and Path(model).exists() else parts[-1] if parts else model


def run_tag(model: str) -> str:
    """A TREC run tag: the model's last path part, with anything but letters, digits, '.', '_', '-' as '_'
    (hybrid:MODEL: hybrid_ and MODEL's tag)."""
    if model.startswith(HYBRID_PREFIX):
        return "hybrid_" + run_tag(model[len(HYBRID_PREFIX):])
    name = Path(model.rstrip("/")).name or model
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "run"


def trec_run_text(query_ids: list[str], doc_ids: list[str], indices: np.ndarray, scores: np.ndarray, tag: str) -> str:
    """`query_id Q0 doc_id rank score tag` per line, ranks from 1, best first (the format trec_eval reads)."""
    lines = []
    for query_id, row, row_scores in zip(query_ids, indices, scores):
        for rank, (i, score) in enumerate(zip(row, row_scores), start=1):
            lines.append(f"{query_id} Q0 {doc_ids[int(i)]} {rank} {float(score):.6f} {tag}\n")
    return "".join(lines)


def run_file_paths(path: Path, models: tuple[str, ...]) -> list[Path]:
    """One model: `path` itself. Several: one file each, `<stem>.<tag><suffix>` beside `path`."""
    if len(models) == 1:
        return [path]
    paths = [path.with_name(f"{path.stem}.{run_tag(m)}{path.suffix}") for m in models]
    if len(set(paths)) < len(paths):  # two models with the same last path part
        paths = [path.with_name(f"{path.stem}.{n}-{run_tag(m)}{path.suffix}") for n, m in enumerate(models, start=1)]
    return paths
