"""`ragtrain tune` on SciFact supervised, and what merging its models does: the measurements behind README Results.

Steps (each runs the real CLI in a subprocess, cached in --work-dir; --only picks some):
  data    prepare-data --beir on SciFact (train claims -> triples with --negatives hard negatives; dev kept)
  small   the validation set the trials are compared on: the 160 dev claims over a reduced corpus (every judged
          abstract and each claim's BM25 top --small-depth), so a validation costs a fifth of the full corpus's
  study   ragtrain tune from train's default search space, --timeout seconds, pruning on every --eval-steps
  final   the base model, the best trial, a soup of the best --soup trials, and the best trial interpolated with
          the base at 0.25 / 0.5 / 0.75, evaluated on the dev claims and on the quickstart sample's test split

    python scripts/bench_tune.py [--work-dir checkpoints/tune_scifact] [--timeout 3600] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from pathlib import Path

from benchlib import MODEL as BASE
from benchlib import REPO, SCIFACT, require

from ragtrain.data.beir import write_beir
from ragtrain.files.jsonfiles import jsonl_text, read_jsonl
from ragtrain.retrieval.bm25 import bm25_search, build_bm25


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=SCIFACT)
    p.add_argument("--work-dir", type=Path, default=REPO / "checkpoints" / "tune_scifact")
    p.add_argument("--negatives", type=int, default=1, help="hard negatives per triple (1 keeps a trial affordable on CPU)")
    p.add_argument("--small-depth", type=int, default=5, help="BM25 hits per dev claim kept in the validation corpus")
    p.add_argument("--timeout", type=int, default=3600, help="tune --timeout: no trial starts after it")
    p.add_argument("--n-trials", type=int, default=30)
    p.add_argument("--eval-steps", type=int, default=12)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-seq-length", type=int, default=256, help="training and validation tokens per text")
    p.add_argument("--study", default="study", help="the study's folder under --work-dir")
    p.add_argument("--processes", type=int, default=1, help="tune processes sharing the study (each --threads)")
    p.add_argument("--epochs-range", default="1,2", help="tune --epochs-range: 3 epochs would double a trial here")
    p.add_argument("--soup", type=int, default=3, help="best trials averaged into the soup")
    p.add_argument("--train-limit", type=int, default=0, help="train on this many triples, sampled (0: all 737); "
                   "a slice for a machine too busy for the whole study")
    p.add_argument("--full-dev", action="store_true", help="final: the dev claims over the whole corpus (5,183 "
                   "abstracts) instead of the validation corpus")
    p.add_argument("--only", default="data,small,study,final")
    return p.parse_args(argv)


def cli(args, name: str, *arguments: str, processes: int = 1) -> None:
    """One ragtrain command in a subprocess (or `processes` alike, together), logged to --work-dir/logs/NAME[-i].log;
    a failure stops the script."""
    command = [sys.executable, "-m", "ragtrain", *arguments]
    print(f"[run] {name}{f' x {processes}' if processes > 1 else ''}: {' '.join(command[2:])}", flush=True)
    logs = [args.work_dir / "logs" / (f"{name}-{i}.log" if processes > 1 else f"{name}.log") for i in range(processes)]
    logs[0].parent.mkdir(parents=True, exist_ok=True)
    running = [subprocess.Popen(command, cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT) for log in logs]
    for process, log in zip(running, logs):
        if process.wait():
            sys.exit(f"step {name} failed; see {log}")


def small_eval_set(source: Path, target: Path, depth: int) -> int:
    """The dev claims over the abstracts judged for them and each claim's BM25 top `depth`; the corpus size."""
    corpus = read_jsonl(source / "corpus.jsonl")
    queries = {q["_id"]: q["text"] for q in read_jsonl(source / "queries.jsonl")}
    rows = [line.split("\t") for line in (source / "qrels" / "dev.tsv").read_text().splitlines()[1:] if line.strip()]
    dev = sorted({q for q, _, _ in rows})
    keep = {d for _, d, _ in rows}
    texts = [f"{c.get('title', '')} {c['text']}".strip() for c in corpus]
    ranked, _ = bm25_search(build_bm25(texts), [queries[q] for q in dev], depth, len(corpus))
    keep |= {corpus[i]["_id"] for row in ranked for i in row}
    write_beir(target, [c for c in corpus if c["_id"] in keep], [{"_id": q, "text": queries[q]} for q in dev],
               {"dev": [(q, d, int(s)) for q, d, s in rows]})
    return len(keep)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    require(args.data / "qrels" / "dev.tsv", "SciFact in BEIR form with train and dev qrels")
    steps, work = args.only.split(","), args.work_dir
    data, small, study = work / "data", work / f"dev-small-{args.small_depth}", work / args.study
    train = data / "train.jsonl" if not args.train_limit else data / f"train-{args.train_limit}.jsonl"
    if "data" in steps:
        cli(args, "prepare", "prepare-data", "--beir", str(args.data), "--negatives", str(args.negatives),
            "-o", str(data), "--overwrite")
    if "data" in steps and args.train_limit:
        rows = read_jsonl(data / "train.jsonl")
        train.write_text(jsonl_text(random.Random(0).sample(rows, min(args.train_limit, len(rows)))))
    if "small" in steps:
        print(f"validation corpus: {small_eval_set(data / 'eval', small, args.small_depth)} abstracts", flush=True)
    if "study" in steps:
        tune_args = ["tune", "--train-data", str(train), "--eval-data", str(small), "--eval-split", "dev",
                     "-o", str(study), "--n-trials", str(args.n_trials), "--timeout", str(args.timeout), "--eval-steps",
                     str(args.eval_steps), "--threads", str(args.threads), "--device", "cpu", "--max-seq-length",
                     str(args.max_seq_length), "--keep-best", str(max(args.soup, 1)), "--epochs-range", args.epochs_range]
        cli(args, "study", *tune_args, processes=args.processes)
    if "final" in steps:
        final(args, data, small, study)


def final(args, data: Path, small: Path, study: Path) -> None:
    """The best trial, a soup of the best --soup trials and the best interpolated with the base, against the base:
    on the dev claims (the validation set, or with --full-dev the whole corpus) and on the quickstart sample's
    test split (another domain: what the base model knew that fine-tuning may have cost)."""
    results = json.loads((study / "results.json").read_text())
    complete = sorted((r for r in results if r["state"] == "COMPLETE"), key=lambda r: -r["value"])
    print("trials: " + ", ".join(f"{state.lower()} {sum(r['state'] == state for r in results)}"
                                 for state in ("COMPLETE", "PRUNED", "FAIL")), flush=True)
    models = [BASE, str(study / "best")]
    soup = [str(Path(r["dir"]) / "best") for r in complete[:args.soup]]
    if len(soup) > 1:
        cli(args, "soup", "merge", *soup, "-o", str(work_path(args, "soup")), "--overwrite")
        models.append(str(work_path(args, "soup")))
    for weight in (0.25, 0.5, 0.75):
        cli(args, f"interp-{weight}", "merge", str(study / "best"), "--base", BASE, "--base-weight", str(weight), "-o",
            str(work_path(args, f"interp-{weight}")), "--overwrite")
        models.append(str(work_path(args, f"interp-{weight}")))
    sample = args.work_dir / "quickstart-data"
    cli(args, "quickstart-data", "prepare-data", str(REPO / "data" / "sample"), "-o", str(sample), "--overwrite")
    sets = [("dev", data / "eval" if args.full_dev else small, "dev"), ("sample-test", sample / "eval", "test")]
    for name, eval_dir, split in sets:
        cli(args, f"eval-{name}", "evaluate", *models, "--eval-data", str(eval_dir), "--split", split, "--k", "1,10",
            "--max-seq-length", str(args.max_seq_length), "--output", str(args.work_dir / f"final-{name}.json"))
        print(drop_progress((args.work_dir / "logs" / f"eval-{name}.log").read_text()), flush=True)


def drop_progress(text: str) -> str:
    return "\n".join(line for line in text.replace("\r", "\n").splitlines() if "it/s" not in line and "s/it" not in line)


def work_path(args, name: str) -> Path:
    return args.work_dir / "merged" / name


if __name__ == "__main__":
    main()
