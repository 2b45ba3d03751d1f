"""Benchmark `prepare-data` with BM25 negatives on the shared SciFact corpus and the PEPs.

Prints, per dataset, the median wall time over --repeats runs, documents/s, triples/s and peak memory
(resident set of this process, which runs everything). Targets on 2 CPU cores: SciFact < 60 s, PEPs < 120 s.

    python scripts/bench_prepare.py [--repeats 1] [--only scifact|peps]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from benchlib import SHARED_DATA, Stopwatch, peak_rss_mib, require

from ragtrain.commands.prepare import prepare
from ragtrain.config.prepare import PrepareConfig

DATASETS = {"scifact": (SHARED_DATA / "scifact" / "corpus.jsonl", 60), "peps": (SHARED_DATA / "peps", 120)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--only", choices=sorted(DATASETS))
    args = parser.parse_args()
    require(SHARED_DATA, "../shared/data next to the repository")
    print(f"{'dataset':10} {'seconds':>8} {'target':>7} {'docs/s':>9} {'triples/s':>10} {'passages':>9} "
          f"{'triples':>8} {'peak MiB':>9}")
    for name, (path, target) in DATASETS.items():
        if args.only and name != args.only:
            continue
        times = []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                stopwatch = Stopwatch()
                summary = prepare(PrepareConfig((path,), Path(tmp) / "out"))
                times.append(stopwatch.seconds())
        seconds = statistics.median(times)
        counts = summary.counts
        print(f"{name:10} {seconds:8.1f} {target:7d} {counts['documents'] / seconds:9.0f} "
              f"{counts['train_triples'] / seconds:10.0f} {counts['passages']:9d} {counts['train_triples']:8d} "
              f"{peak_rss_mib():9.0f}", flush=True)


if __name__ == "__main__":
    main()
