"""What prepare-data's default of 4 hard negatives costs on CPU against 1, and what it buys.

SciFact supervised: `prepare-data --beir` with its defaults (up to 4 BM25 negatives per triple), then the same
triples cut to their first negative. Each side trains in a subprocess of its own (its own peak RSS) with train's
labelled defaults at 256 tokens, batch 32, and reports seconds per step and peak RSS; with --evaluate each trained
model's best/ is then scored on the dev claims (nDCG@10).

    python scripts/bench_negatives.py [--steps 0] [--threads 1] [--evaluate]

--steps N trains each side on its first N batches of triples, one epoch (a slice for the cost only); 0: the whole
run with train's labelled defaults.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from benchlib import MODEL, REPO, SCIFACT, Stopwatch, peak_rss_mib, print_result, require, run_child

from ragtrain.files.jsonfiles import jsonl_text, read_jsonl


def run_one(triples: Path, out: Path, steps: int, threads: int, eval_dir: Path | None) -> dict:
    """In the child: one train run; its seconds per step and peak RSS (and best validation nDCG@10)."""
    from ragtrain.commands.train import train
    from ragtrain.config.train import TrainConfig

    stopwatch = Stopwatch()
    options = {"epochs": 1} if steps else {}  # a slice: the triples file holds `steps` batches
    train(TrainConfig(train_data=triples, model=MODEL, output_dir=out, max_seq_length=256, batch_size=32, device="cpu",
                      threads=threads, overwrite=True, eval_data=eval_dir, eval_split="dev", log_steps=1, **options))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    step_rows = [r for r in rows if "triples_per_s" in r]
    seconds_per_step = sorted(32 / r["triples_per_s"] for r in step_rows)[len(step_rows) // 2]
    best = max((r["ndcg@10"] for r in rows if "ndcg@10" in r), default=None)
    return {"steps": len(step_rows), "median_s_per_step": seconds_per_step, "peak_rss_mb": peak_rss_mib(),
            "seconds": stopwatch.seconds(), "best_val_ndcg@10": best}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work-dir", type=Path, default=REPO / "checkpoints" / "bench_negatives")
    p.add_argument("--steps", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--evaluate", action="store_true", help="validate on the dev claims (whole corpus) at each epoch's "
                   "end and keep best/ by it")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        triples, out, eval_dir = args.child
        print_result(run_one(Path(triples), Path(out), args.steps, args.threads,
                             Path(eval_dir) if eval_dir != "-" else None))
        return
    require(SCIFACT / "qrels" / "dev.tsv", "SciFact in BEIR form with train and dev qrels")
    data = args.work_dir / "data"
    if not (data / "train.jsonl").is_file():
        subprocess.run([sys.executable, "-m", "ragtrain", "prepare-data", "--beir", str(SCIFACT), "-o", str(data)],
                       cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    rows = read_jsonl(data / "train.jsonl")
    four, one = args.work_dir / "train-4neg.jsonl", args.work_dir / "train-1neg.jsonl"
    sliced = rows[:32 * args.steps] if args.steps else rows  # prepare-data's order is already shuffled by query
    four.write_text(jsonl_text(sliced))
    shutil.copy(data / "manifest.json", args.work_dir / "manifest.json")  # beside them: train's labelled defaults
    one.write_text(jsonl_text([r | {"negatives": r["negatives"][:1]} for r in sliced]))
    print(f"{len(rows)} triples; negatives per triple: {sum(len(r['negatives']) for r in rows) / len(rows):.2f} "
          "(prepare-data's default of 4, fewer where the false-negative filter left fewer)", flush=True)
    eval_dir = str(data / "eval") if args.evaluate else "-"
    print("| negatives | steps | s/step (median) | peak RSS (MB) | wall s | best dev nDCG@10 |\n|---|---:|---:|---:|---:|---:|")
    for name, triples in (("4 (default)", four), ("1", one)):
        r = run_child([sys.executable, __file__, "--child", str(triples), str(args.work_dir / f"run-{name[0]}"),
                       eval_dir, "--steps", str(args.steps), "--threads", str(args.threads)], name)
        best = f"{r['best_val_ndcg@10']:.4f}" if r["best_val_ndcg@10"] is not None else ""
        print(f"| {name} | {r['steps']} | {r['median_s_per_step']:.1f} | {r['peak_rss_mb']:.0f} | {r['seconds']:.0f} "
              f"| {best} |", flush=True)


if __name__ == "__main__":
    main()
