"""Peak memory of training on CPU: batch 32 as usual against batch 512 with --grad-cache --mini-batch-size 32.

Each configuration trains in its own subprocess (so each peak RSS is its own) through ragtrain.training.loop.train,
on real text triples built from BEIR SciFact: query = a paper's title, positive = its abstract, hard
negative = another paper's abstract. all-MiniLM-L6-v2 (bundled copy), max length 128, a couple of steps.
A third subprocess only loads the model and tokenises the data: the floor every run pays before training.

    python scripts/bench_memory.py [--steps 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from benchlib import MODEL, SCIFACT, Stopwatch, peak_rss_mib, print_result, require, run_child, scifact_triples

CONFIGS = {
    "load only": {},
    "batch 32": {"batch_size": 32},
    "batch 512, --grad-cache --mini-batch-size 32": {"batch_size": 512, "grad_cache": True, "mini_batch_size": 32},
}


def run_one(name: str, steps: int, threads: int, workdir: Path) -> dict:
    """In the child: train (or only load) and report its own peak RSS."""
    import torch

    from ragtrain.commands.train import train
    from ragtrain.config.train import TrainConfig

    torch.set_num_threads(threads)
    options = CONFIGS[name]
    stopwatch = Stopwatch()
    if not options:  # the floor: model loaded, data tokenised, no step
        from ragtrain.data.triples import load_triples, tokenize_triples
        from ragtrain.model.loading import load_encoder
        from ragtrain.model.settings import TextOptions

        tokenize_triples(load_triples(workdir / "triples.jsonl"), load_encoder(MODEL, TextOptions(max_length=128)))
    else:
        triples = scifact_triples(workdir / f"triples-{options['batch_size']}.jsonl", options["batch_size"] * steps)
        train(TrainConfig(train_data=triples, model=MODEL, output_dir=workdir / "run", max_seq_length=128,
                          epochs=1, device="cpu", threads=threads, log_steps=1, overwrite=True, **options))
    return {"config": name, "peak_rss_mb": peak_rss_mib(), "seconds": stopwatch.seconds()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print_result(run_one(args.child, args.steps, args.threads, args.workdir))
        return
    require(SCIFACT, "BEIR SciFact")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        scifact_triples(Path(tmp) / "triples.jsonl", 512 * args.steps)
        for name in CONFIGS:
            results.append(run_child([sys.executable, __file__, "--child", name, "--steps", str(args.steps),
                                      "--threads", str(args.threads), "--workdir", tmp], name))
            print(f"{name}: peak RSS {results[-1]['peak_rss_mb']:.0f} MB ({results[-1]['seconds']:.0f} s)", flush=True)
    floor, small, big = (r["peak_rss_mb"] for r in results)
    print("\n| configuration | peak RSS (MB) | above load-only (MB) |\n| --- | ---: | ---: |")
    for r in results:
        print(f"| {r['config']} | {r['peak_rss_mb']:.0f} | {r['peak_rss_mb'] - floor:.0f} |")
    print(f"\nbatch 512 with GradCache / batch 32: {big / small:.2f}x peak RSS "
          f"({(big - floor) / (small - floor):.2f}x of the memory above loading); target <= 1.2x")


if __name__ == "__main__":
    main()
