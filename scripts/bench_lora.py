"""LoRA against full fine-tuning on the bundled all-MiniLM-L6-v2: trainable parameters, peak memory, triples/s.

Same triples (benchlib.scifact_triples), batch, length, threads and steps for both; each side in its own
subprocess (its own peak RSS); the figure is the median triples/s of the measured steps after the warm-up.

    python scripts/bench_lora.py [--triples 256] [--batch-size 32] [--max-seq-length 128] [--rank 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from benchlib import MODEL, SCIFACT, Stopwatch, peak_rss_mib, print_result, require, run_child, scifact_triples


def measure(args: argparse.Namespace, rank: int) -> dict:
    import torch

    from ragtrain.config.train import TrainConfig
    from ragtrain.data.triples import epoch_batches, load_triples, tokenize_triples
    from ragtrain.model.loading import load_encoder
    from ragtrain.model.lora import add_lora
    from ragtrain.model.runtime import return_freed_memory_to_os, training_runtime
    from ragtrain.model.world import WorldInfo
    from ragtrain.training.optim import build_optimizer
    from ragtrain.training.step import loss_options, step_batches, train_step

    torch.set_num_threads(args.threads)
    return_freed_memory_to_os()  # as train() does on CPU
    torch.manual_seed(0)
    config = TrainConfig(train_data=args.data, model=MODEL, batch_size=args.batch_size, learning_rate=2e-5,
                         temperature=0.05, max_seq_length=args.max_seq_length, device="cpu", lora_rank=rank)
    encoder = load_encoder(MODEL, config.text_options(), attention_dropout=config.attention_dropout)
    if rank:
        encoder.transformer = add_lora(encoder.transformer, rank, config.lora_alpha, config.lora_dropout, None)
    encoder.train()
    data = tokenize_triples(load_triples(args.data), encoder)
    optimizer = build_optimizer(encoder, config.weight_decay, config.base_lr, config.head_lr)
    runtime = training_runtime(torch.device("cpu"), "fp32")
    scaler = runtime.grad_scaler()
    rates = []
    for batch in epoch_batches(data, args.batch_size, config.seed, 0)[: args.warmup + args.steps]:
        stopwatch = Stopwatch()
        train_step(encoder, optimizer, scaler, step_batches(data, batch, config, WorldInfo(), encoder.pad_id),
                   config, runtime, loss_options(config, encoder.settings))
        rates.append(len(batch) / stopwatch.seconds())
    return {"trainable": sum(p.numel() for p in encoder.parameters() if p.requires_grad),
            "total": sum(p.numel() for p in encoder.parameters()), "peak_rss_mb": peak_rss_mib(),
            "triples_per_s": statistics.median(rates[args.warmup:])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--triples", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-seq-length", type=int, default=128)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--side", type=int, help=argparse.SUPPRESS)  # child: the LoRA rank to measure (0: full)
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.side is not None:
        print_result(measure(args, args.side))
        return
    require(SCIFACT, "the shared SciFact data")
    data = scifact_triples(Path(tempfile.mkdtemp(prefix="bench-lora-")) / "triples.jsonl", args.triples)
    common = ["--data", str(data), "--batch-size", str(args.batch_size), "--max-seq-length", str(args.max_seq_length),
              "--threads", str(args.threads), "--warmup", str(args.warmup), "--steps", str(args.steps)]
    results = {name: run_child([sys.executable, __file__, "--side", str(rank), *common], name)
               for name, rank in (("full fine-tuning", 0), (f"LoRA rank {args.rank}", args.rank))}
    print(f"{MODEL}; {args.triples} SciFact triples; batch {args.batch_size}; max length {args.max_seq_length}; fp32; "
          f"{args.threads} thread(s); warm-up {args.warmup} + {args.steps} measured steps (median)")
    print(f"{'':20}{'trainable params':>18}{'of':>12}{'peak RSS MB':>13}{'triples/s':>11}")
    for name, r in results.items():
        print(f"{name:20}{r['trainable']:18,}{r['total']:12,}{r['peak_rss_mb']:13.0f}{r['triples_per_s']:11.2f}")


if __name__ == "__main__":
    main()
