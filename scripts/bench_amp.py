"""Mixed precision against fp32: time, triples/s, peak memory and final loss of the same training run.

On a CUDA GPU: fp32, fp16 (autocast + gradient scaler) and bf16 (autocast). On CPU: fp32 and bf16 (autocast;
fp16 autocast is not offered on CPU). Each precision trains in its own subprocess through ragtrain.training.loop.train
(same seed, same batches), on real triples from BEIR SciFact (title -> abstract, another abstract as hard
negative), all-MiniLM-L6-v2 (bundled copy). The first step (warm-up allocations, kernel selection) is left
out of the time and the median rate.

    python scripts/bench_amp.py                       # CPU: --device cpu --steps 8 --batch-size 32
    python scripts/bench_amp.py --device cuda --steps 40 --batch-size 128
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from benchlib import MODEL, SCIFACT, print_result, require, run_child, scifact_triples  # the memory benchmark's triples

PRECISIONS = {"cpu": ["fp32", "bf16"], "cuda": ["fp32", "fp16", "bf16"]}


def run_one(precision: str, args: argparse.Namespace) -> dict:
    """In the child: train, then read the rates, memory and losses back from metrics.jsonl."""
    from ragtrain.commands.train import train
    from ragtrain.config.train import TrainConfig

    run_dir = args.workdir / f"run-{precision}"
    train(TrainConfig(train_data=args.workdir / "triples.jsonl", model=MODEL, output_dir=run_dir,
                      max_seq_length=args.max_seq_length, batch_size=args.batch_size, epochs=1, device=args.device,
                      precision=precision,
                      threads=args.threads if args.device == "cpu" else 0, log_steps=1, warmup_ratio=0.0,
                      learning_rate=5e-5, overwrite=True))
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    steady = rows[1:]  # the first step pays one-off costs
    return {"precision": precision, "seconds": sum(args.batch_size / r["triples_per_s"] for r in steady),
            "triples_per_s": statistics.median(r["triples_per_s"] for r in steady),
            "peak_memory_mb": rows[-1]["memory_mb"], "final_loss": rows[-1]["loss"], "steps": len(rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print_result(run_one(args.child, args))
        return
    require(SCIFACT, "BEIR SciFact")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        scifact_triples(Path(tmp) / "triples.jsonl", args.batch_size * args.steps)
        for precision in PRECISIONS[args.device]:
            command = [sys.executable, __file__, "--child", precision, "--workdir", tmp, "--device", args.device,
                       "--steps", str(args.steps), "--batch-size", str(args.batch_size),
                       "--max-seq-length", str(args.max_seq_length), "--threads", str(args.threads)]
            results.append(run_child(command, precision))
            print(f"{precision}: {results[-1]['triples_per_s']:.1f} triples/s", flush=True)
    base = results[0]
    memory = "peak GPU memory allocated" if args.device == "cuda" else "peak RSS"
    print(f"\n{args.device}, batch {args.batch_size}, max length {args.max_seq_length}, {base['steps']} steps "
          f"(first left out of time and rate)\n")
    print(f"| precision | time (s) | triples/s (median) | {memory} (MB) | final loss | speed-up vs fp32 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(f"| {r['precision']} | {r['seconds']:.1f} | {r['triples_per_s']:.1f} | {r['peak_memory_mb']:.0f} | "
              f"{r['final_loss']:.4f} | {r['triples_per_s'] / base['triples_per_s']:.2f}x |")


if __name__ == "__main__":
    main()
