"""The triples file that bench_quality gives both trainers: sampled, seeded, exactly N negatives each; the recipe rows
and the seeds table (--seeds)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

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


def test_recipe_rows_run_each_seed_as_a_user_runs_train(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(bench, "run_step", lambda name, command, done, args, times, cwd=bench.REPO:
                        calls.append((name, command, cwd)))
    args = bench.parse_args(["--work-dir", str(tmp_path), "--seeds", "42,43", "--threads", "1", "--code-dir", str(tmp_path)])
    trained_by: dict[str, str] = {}
    run_dirs: dict = {}
    models = bench.recipe_rows(args, {"sup-default", "sup-1neg", "sup-1neg-code"}, ["ragtrain"], [42, 43], {},
                               trained_by, run_dirs)
    names = [name for name, _, _ in calls]
    assert names == ["prepare-sup4", "prepare-sup1", "train-sup-default-seed42", "train-sup-1neg-seed42",
                     "train-sup-1neg-code-seed42", "train-sup-default-seed43", "train-sup-1neg-seed43",
                     "train-sup-1neg-code-seed43"]  # seeds innermost: every row's first seed comes first
    commands = {name: command for name, command, _ in calls}
    assert "--negatives" not in commands["prepare-sup4"]
    assert commands["prepare-sup1"][commands["prepare-sup1"].index("--negatives") + 1] == "1"
    default = commands["train-sup-default-seed43"]
    # nothing a user would not type: no hyperparameter, so train's labelled defaults apply
    for flag in ("--learning-rate", "--epochs", "--temperature", "--warmup-ratio", "--batch-size", "--max-seq-length"):
        assert flag not in default and flag not in commands["train-sup-1neg-seed42"]
    assert default[default.index("--seed") + 1] == "43"
    assert default[default.index("--train-data") + 1] == str(tmp_path / "sup4_data" / "train.jsonl")
    old = commands["train-sup-1neg-code-seed42"]
    assert old[old.index("--train-data") + 1] == str(tmp_path / "sup1_data" / "train.jsonl")  # sup-1neg's triples
    assert old[old.index("--learning-rate") + 1] == "8e-05" and old[old.index("--epochs") + 1] == "2"
    cwds = {name: cwd for name, _, cwd in calls}
    assert cwds["train-sup-1neg-code-seed42"] == tmp_path.resolve() and cwds["train-sup-1neg-seed42"] == bench.REPO
    assert models["ragtrain supervised defaults [seed 42]"] == str(tmp_path / "ragtrain_sup-default_seed42" / "final")
    assert trained_by["ragtrain supervised defaults 1 neg [seed 43]"] == "train-sup-1neg-seed43"
    assert run_dirs["ragtrain supervised defaults [seed 43]"] == tmp_path / "ragtrain_sup-default_seed43"


def test_the_dense_miner_row_prepares_its_own_data(tmp_path, monkeypatch):
    calls = {}
    monkeypatch.setattr(bench, "run_step", lambda name, command, done, args, times, cwd=bench.REPO:
                        calls.setdefault(name, command))
    args = bench.parse_args(["--work-dir", str(tmp_path), "--seeds", "44"])
    bench.recipe_rows(args, {"sup-dense"}, ["ragtrain"], [44], {}, {}, {})
    assert list(calls) == ["prepare-sup1-dense", "train-sup-dense-seed44"]
    dense = calls["prepare-sup1-dense"]
    assert dense[dense.index("--miner") + 1] == "dense" and dense[dense.index("--model") + 1] == bench.BASE
    assert dense[dense.index("--negatives") + 1] == "1"
    train = calls["train-sup-dense-seed44"]
    assert train[train.index("--train-data") + 1] == str(tmp_path / "sup1-dense_data" / "train.jsonl")


def test_label_free_rows_prepare_from_the_corpus_alone(tmp_path, monkeypatch):
    calls = {}
    monkeypatch.setattr(bench, "run_step", lambda name, command, done, args, times, cwd=bench.REPO:
                        calls.setdefault(name, command))
    args = bench.parse_args(["--work-dir", str(tmp_path), "--seeds", "42"])
    bench.recipe_rows(args, {"lf-default", "lf-kl-t1"}, ["ragtrain"], [42], {}, {}, {})
    assert list(calls) == ["prepare-lf-default", "prepare-lf-kl", "train-lf-default-seed42", "train-lf-kl-t1-seed42"]
    for name in ("prepare-lf-default", "prepare-lf-kl"):
        assert "--beir" not in calls[name] and str(args.data / "corpus.jsonl") in calls[name]  # no queries, no qrels
    assert calls["prepare-lf-default"][2:4] == [str(args.data / "corpus.jsonl"), "-o"]  # prepare-data's defaults
    kl = calls["prepare-lf-kl"]
    assert kl[kl.index("--teacher") + 1] == "hybrid" and kl[kl.index("--miner") + 1] == "hybrid"
    train = calls["train-lf-kl-t1-seed42"]
    assert train[train.index("--teacher-temperature") + 1] == "1" and train[train.index("--loss") + 1] == "distill"
    assert "--learning-rate" not in train and "--learning-rate" not in calls["train-lf-default-seed42"]


def fake_beir(root: Path) -> Path:
    (root / "qrels").mkdir(parents=True)
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n7\td1\t1\n3\td2\t1\n")
    (root / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\n5\td3\t1\n")
    write(root / "queries.jsonl", [{"_id": i, "text": f"claim {i}"} for i in ("3", "5", "7")])
    return root


def test_the_gemma_row_prompts_with_train_claims_read_at_run_time(tmp_path, monkeypatch):
    calls = {}
    monkeypatch.setattr(bench, "run_step", lambda name, command, done, args, times, cwd=bench.REPO:
                        calls.setdefault(name, command))
    data = fake_beir(tmp_path / "beir")
    args = bench.parse_args(["--work-dir", str(tmp_path / "w"), "--data", str(data), "--example-claims", "7,3"])
    (tmp_path / "w").mkdir()
    bench.recipe_rows(args, {"lf-gemma", "lf-gemma-lr8e2", "lf-gemma-kl-t1"}, ["ragtrain"], [42], {}, {}, {})
    assert list(calls) == ["prepare-lf-gemma", "prepare-lf-gemma-kl", "train-lf-gemma-seed42",
                           "train-lf-gemma-lr8e2-seed42", "train-lf-gemma-kl-t1-seed42"]
    prepare = calls["prepare-lf-gemma"]
    assert "--beir" not in prepare and prepare[2] == str(data / "corpus.jsonl")
    examples = Path(prepare[prepare.index("--generator-examples") + 1])
    assert examples.read_text() == "claim 7\nclaim 3\n"  # the ids' texts, in their order
    assert prepare[prepare.index("--filter") + 1] == "hybrid" and prepare[prepare.index("--query-strategy") + 1] == "llm"
    assert "--learning-rate" not in calls["train-lf-gemma-seed42"]
    kl = calls["prepare-lf-gemma-kl"]  # the same claims, scored by the hybrid teacher
    assert kl[kl.index("--generator-examples") + 1] == str(examples) and kl[kl.index("--teacher") + 1] == "hybrid"
    assert calls["train-lf-gemma-kl-t1-seed42"][-2:] == ["--teacher-temperature", "1"]


def test_example_claims_must_come_from_the_train_split(tmp_path):
    data = fake_beir(tmp_path / "beir")
    with pytest.raises(SystemExit, match=r"not in it: \['5'\]"):
        bench.write_example_claims(data, "7,5", tmp_path / "x.txt")
    assert not (tmp_path / "x.txt").exists()


def test_code_row_needs_a_code_dir(tmp_path):
    args = bench.parse_args(["--work-dir", str(tmp_path)])
    with pytest.raises(SystemExit, match="--code-dir"):
        bench.recipe_rows(args, {"sup-1neg-code"}, ["ragtrain"], [None], {}, {}, {})


def test_seed_summary_medians_spread_and_costs(tmp_path):
    def metrics(ndcg):
        return {"ndcg@10": ndcg, "recall@10": ndcg + 0.1, "recall@100": ndcg + 0.2, "mrr@10": ndcg - 0.1}
    results = {"base MiniLM-L6": metrics(0.68),
               "ragtrain x [seed 42]": metrics(0.74), "ragtrain x [seed 43]": metrics(0.72),
               "ragtrain x [seed 44]": metrics(0.75)}
    records = {"ragtrain x [seed 42]": {"train_s": 100.0, "peak_mb": 3000.0, "steps": 48},
               "ragtrain x [seed 43]": {"train_s": 130.0, "peak_mb": 3100.0, "steps": 48},
               "ragtrain x [seed 44]": {"train_s": 90.0, "peak_mb": 2900.0, "steps": 48}}
    summary = bench.seed_summary(results, records)
    assert list(summary) == ["base MiniLM-L6", "ragtrain x"]
    x = summary["ragtrain x"]
    assert x["median"]["ndcg@10"] == 0.74 and abs(x["median"]["recall@100"] - 0.94) < 1e-12
    assert (x["min"], x["max"]) == (0.72, 0.75)
    assert x["seeds"] == {"42": 0.74, "43": 0.72, "44": 0.75}
    assert (x["train_s"], x["peak_mb"], x["steps"]) == (100.0, 3100.0, [48])
    assert summary["base MiniLM-L6"]["median"]["ndcg@10"] == 0.68 and summary["base MiniLM-L6"]["train_s"] is None


def test_run_record_reads_metrics_and_the_training_table(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    write(run / "metrics.jsonl", [{"step": 10, "memory_mb": 2000.5}, {"step": 20, "memory_mb": 2500.0},
                                  {"validation": True, "ndcg@10": 0.7}])
    log = tmp_path / "train.log"
    log.write_text("...\n│ steps              │  48 / 48 │\n│ time               │ 1234.5 s │\n│ peak memory │ 2500 MB │\n")
    assert bench.run_record(run, log) == {"steps": 20, "peak_mb": 2500.0, "train_s": 1234.5}
    assert bench.run_record(None, tmp_path / "missing.log") == {"steps": None, "peak_mb": None, "train_s": None}


def test_seeds_are_parsed_and_labels_grouped():
    assert bench.parse_seeds("") == [None]
    assert bench.parse_seeds("42, 43,44") == [42, 43, 44]
    with pytest.raises(SystemExit):
        bench.parse_seeds("42,42")
    label, step, out = bench.seeded(43, "ragtrain sup", "train-sup", Path("w/ragtrain_sup"))
    assert (label, step, out) == ("ragtrain sup [seed 43]", "train-sup-seed43", Path("w/ragtrain_sup_seed43"))
    assert bench.seeded(None, "ragtrain sup", "train-sup", Path("w/x")) == ("ragtrain sup", "train-sup", Path("w/x"))
    assert bench.row_of("ragtrain sup [seed 43] @128") == "ragtrain sup @128" and bench.seed_of(label) == 43
