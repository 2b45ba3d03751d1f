"""The triples file that bench_quality gives both trainers: sampled, seeded, exactly N negatives each."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_quality.py"
sys.path.insert(0, str(SCRIPT.parent))  # as when it runs: its own folder first, for benchlib
spec = importlib.util.spec_from_file_location("bench_quality", SCRIPT)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_short_triples_are_filled_and_long_ones_cut(tmp_path):
    rows = [{"query": f"q{i}", "positive": f"p{i}", "negatives": [f"n{i}-{j}" for j in range(i % 4)]} for i in range(8)]
    assert bench.fixed_triples(write(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl", 2, None, seed=0) == 8
    out = read(tmp_path / "out.jsonl")
    assert [r["query"] for r in out] == [f"q{i}" for i in range(8)]
    for row, original in zip(out, rows):
        assert len(row["negatives"]) == 2 and len(set(row["negatives"])) == 2
        assert row["positive"] not in row["negatives"]
        assert row["negatives"][: len(original["negatives"])] == original["negatives"][:2]  # mined ones kept first


def test_sampling_is_seeded_and_limited(tmp_path):
    rows = [{"query": f"q{i}", "positive": f"p{i}", "negatives": [f"n{i}"]} for i in range(50)]
    source = write(tmp_path / "in.jsonl", rows)
    bench.fixed_triples(source, tmp_path / "a.jsonl", 1, 10, seed=3)
    bench.fixed_triples(source, tmp_path / "b.jsonl", 1, 10, seed=3)
    assert len(read(tmp_path / "a.jsonl")) == 10
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


def test_llm_rows_prepare_once_then_train_each_loss(tmp_path, monkeypatch):
    commands = {}
    monkeypatch.setattr(bench, "run_step", lambda name, command, done, args, times: commands.setdefault(name, command))
    args = bench.parse_args(["--work-dir", str(tmp_path), "--llm-passages", "144"])
    trained_by: dict[str, str] = {}
    models = bench.llm_rows(args, {"llm", "llm-distill"}, ["ragtrain"], ["--device", "cpu"], {}, trained_by)
    assert list(commands) == ["prepare-llm", "train-llm", "train-llm-distill"]
    prepare = commands["prepare-llm"]
    for flag, value in (("--query-strategy", "llm"), ("--generator-max-passages", "144"), ("--teacher", "hybrid"),
                        ("--filter", "bm25")):
        assert prepare[prepare.index(flag) + 1] == value
    assert "--loss" in commands["train-llm"] and commands["train-llm"][commands["train-llm"].index("--loss") + 1] == "infonce"
    distill = commands["train-llm-distill"]
    assert distill[distill.index("--loss") + 1] == "distill" and "--distill-objective" in distill
    assert models == {"ragtrain label-free llm": str(tmp_path / "ragtrain_llm" / "final"),
                      "ragtrain label-free llm distill": str(tmp_path / "ragtrain_llm-distill" / "final")}
    assert trained_by["ragtrain label-free llm distill"] == "train-llm-distill"
