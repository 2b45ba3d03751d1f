"""Benchmark `prepare-data` with BM25 negatives: on the shared SciFact corpus and the PEPs, or on synthetic corpora of
N passages (scripts/make_corpus.py, made on demand outside the repository).

Each run is a Python process of its own, so its peak memory (resident set) is its own; the table gives the median
wall time over --repeats runs and the largest peak among them. Targets on 2 CPU cores:
SciFact < 60 s, PEPs < 120 s, 1,000,000 passages < 10 min and < 4 GB.

    python scripts/bench_prepare.py [--repeats 1] [--only scifact|peps]
    python scripts/bench_prepare.py --passages 100000 300000 1000000 [--max-triples 50000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from benchlib import SHARED_DATA, Stopwatch, peak_rss_mib, print_result, require, run_child
from make_corpus import make_corpus

DATASETS = {"scifact": (SHARED_DATA / "scifact" / "corpus.jsonl", 60), "peps": (SHARED_DATA / "peps", 120)}


def run_once(inputs: Path, max_triples: int) -> dict:
    """In the child: one prepare-data run into a temporary folder; its seconds, peak RSS and counts."""
    from ragtrain.commands.prepare import prepare
    from ragtrain.config.prepare import PrepareConfig

    with tempfile.TemporaryDirectory(prefix="ragtrain-bench-prepare-") as tmp:
        stopwatch = Stopwatch()
        counts = prepare(PrepareConfig((inputs,), Path(tmp) / "out", max_triples=max_triples)).counts
        seconds = stopwatch.seconds()
    return {"seconds": seconds, "peak_rss_mib": peak_rss_mib(), "counts": dict(counts)}


def measure(label: str, inputs: Path, args: argparse.Namespace) -> tuple[float, float, dict]:
    """(median seconds, largest peak MiB, counts) over --repeats runs, each in its own process."""
    runs = [run_child([sys.executable, __file__, "--child", str(inputs), "--max-triples", str(args.max_triples)], label)
            for _ in range(args.repeats)]
    return statistics.median(r["seconds"] for r in runs), max(r["peak_rss_mib"] for r in runs), runs[0]["counts"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--only", choices=sorted(DATASETS))
    parser.add_argument("--passages", type=int, nargs="+", help="synthetic corpora of these many passages instead")
    parser.add_argument("--max-triples", type=int, default=0, help="prepare-data --max-triples (0: no cap)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return print_result(run_once(args.child, args.max_triples))
    require(SHARED_DATA, "../shared/data next to the repository")
    runs = ({f"{n:,} passages": (make_corpus(n) / "docs.jsonl", None) for n in args.passages} if args.passages
            else {name: value for name, value in DATASETS.items() if not args.only or name == args.only})
    print(f"prepare-data, BM25 negatives, --max-triples {args.max_triples}, median of {args.repeats}")
    print(f"{'corpus':18} {'seconds':>8} {'peak MiB':>9} {'passages':>10} {'passages/s':>11} {'triples':>8} "
          f"{'triples/s':>10} {'target s':>8}")
    for name, (path, target) in runs.items():
        seconds, peak, counts = measure(name, path, args)
        print(f"{name:18} {seconds:8.1f} {peak:9.0f} {counts['passages']:10,} {counts['passages'] / seconds:11,.0f} "
              f"{counts['train_triples']:8,} {counts['train_triples'] / seconds:10,.0f} {target or 600:8d}", flush=True)


if __name__ == "__main__":
    main()
