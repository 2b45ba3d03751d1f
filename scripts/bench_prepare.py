"""Benchmark `prepare-data` with BM25 negatives on the shared SciFact corpus and the PEPs.

Prints, per dataset, the median wall time over --repeats runs, documents/s, triples/s and peak memory
(resident set of this process, which runs everything). Targets on 2 CPU cores: SciFact < 60 s, PEPs < 120 s.

    python scripts/bench_prepare.py [--repeats 1] [--only scifact|peps]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO))

from ragtrain.config import PrepareConfig  # noqa: E402
from ragtrain.prepare import prepare  # noqa: E402

DATASETS = {"scifact": (SHARED_DATA / "scifact" / "corpus.jsonl", 60), "peps": (SHARED_DATA / "peps", 120)}


def peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--only", choices=sorted(DATASETS))
    args = parser.parse_args()
    if not SHARED_DATA.is_dir():
        sys.exit(f"shared data not found at {SHARED_DATA}; this benchmark needs ../shared/data next to the repo")
    print(f"{'dataset':10} {'seconds':>8} {'target':>7} {'docs/s':>9} {'triples/s':>10} {'passages':>9} "
          f"{'triples':>8} {'peak MiB':>9}")
    for name, (path, target) in DATASETS.items():
        if args.only and name != args.only:
            continue
        times = []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                started = time.perf_counter()
                summary = prepare(PrepareConfig((path,), Path(tmp) / "out"))
                times.append(time.perf_counter() - started)
        seconds = statistics.median(times)
        counts = summary.counts
        print(f"{name:10} {seconds:8.1f} {target:7d} {counts['documents'] / seconds:9.0f} "
              f"{counts['train_triples'] / seconds:10.0f} {counts['passages']:9d} {counts['train_triples']:8d} "
              f"{peak_rss_mib():9.0f}", flush=True)


if __name__ == "__main__":
    main()
