"""Training speed and memory: ragtrain's step against sentence-transformers' trainer, side by side in one run.

Same triples (built from SciFact: title -> 1-4 abstract sentences, a sentence window of another abstract as
the hard negative), same model (bundled all-MiniLM-L6-v2), batch 32, max length 128, fp32, 2 threads.
Each side runs in its own subprocess (separate peak RSS): warm-up steps, then measured steps; the figure
is the median of the measured steps' triples/s. The comparison is fp32; where the CPU multiplies bf16 natively
(AVX-512 BF16 or AMX) both sides also run with bf16 autocast (ragtrain's `--precision bf16`,
the peer's `bf16=True`), reported apart.

    python scripts/bench_train.py [--triples 2000] [--warmup 3] [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import time
from pathlib import Path

from benchlib import MODEL, SCIFACT, Stopwatch, peak_rss_mib, print_result, require, run_child

BATCH, MAX_LEN, THREADS = 32, 128, 2


def build_triples(count: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    docs = [json.loads(line) for line in (SCIFACT / "corpus.jsonl").read_text().splitlines()]
    docs = [d for d in docs if d["title"].strip() and len(re.split(r"(?<=[.!?])\s+", d["text"])) >= 2]
    rng.shuffle(docs)
    triples = []
    for doc, other in zip(docs[:count], docs[count : 2 * count] + docs[: count]):
        own, theirs = re.split(r"(?<=[.!?])\s+", doc["text"]), re.split(r"(?<=[.!?])\s+", other["text"])
        take, start = rng.randint(1, 4), rng.randint(0, max(0, len(theirs) - 2))
        triples.append({"query": doc["title"], "positive": " ".join(own[:take]),
                        "negatives": [" ".join(theirs[start : start + rng.randint(1, 3)])]})
    return triples


def run_ragtrain(triples_path: Path, warmup: int, steps: int, bf16: bool = False, device_name: str = "cpu") -> dict:
    import torch

    from ragtrain.config.train import TrainConfig
    from ragtrain.data.triples import epoch_batches, load_triples, tokenize_triples
    from ragtrain.model.loading import load_encoder
    from ragtrain.model.runtime import return_freed_memory_to_os, training_runtime
    from ragtrain.model.world import WorldInfo
    from ragtrain.training.optim import build_optimizer
    from ragtrain.training.step import loss_options, step_batches, train_step

    torch.set_num_threads(THREADS)
    return_freed_memory_to_os()  # as train() does on CPU
    torch.manual_seed(0)
    config = TrainConfig(train_data=triples_path, model=MODEL, batch_size=BATCH, max_seq_length=MAX_LEN,
                         device=device_name, precision="bf16" if bf16 else "fp32", learning_rate=2e-5, temperature=0.05)
    device = torch.device(device_name)
    encoder = load_encoder(MODEL, config.text_options(), attention_dropout=config.attention_dropout)
    encoder.to(device).train()
    data = tokenize_triples(load_triples(triples_path), encoder)  # what train() does, once
    batches = epoch_batches(data, BATCH, config.seed, 0)
    optimizer = build_optimizer(encoder, config.weight_decay, config.base_lr, config.head_lr)
    runtime = training_runtime(device, config.precision)  # as train() decides it
    scaler = runtime.grad_scaler()
    rates, tokens, attention = [], [], []
    for batch in batches[: warmup + steps]:
        stopwatch = Stopwatch()
        parts = step_batches(data, batch, config, WorldInfo(), encoder.pad_id)
        result = train_step(encoder, optimizer, scaler, parts, config, runtime, loss_options(config, encoder.settings))
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # the step's kernels have run, not only been queued
        seconds = stopwatch.seconds()
        rates.append(len(batch) / seconds)
        tokens.append(result.real_tokens / seconds)
        lengths = [len(data.queries[i]) for i in batch] + [len(data.positives[i]) for i in batch] + \
                  [len(n) for i in batch for n in data.negatives[i]]
        attention.append(sum(n * n for n in lengths) / seconds)
    return {"triples_per_s": statistics.median(rates[warmup:]), "tokens_per_s": statistics.median(tokens[warmup:]),
            "attention_l2_per_s": statistics.median(attention[warmup:]), "peak_rss_mb": peak_rss_mib(),
            "cuda_peak_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
            "params": layer_params(encoder.transformer), "hidden": encoder.hidden_size,
            "layers": encoder.transformer.config.num_hidden_layers}


def run_sentence_transformers(triples_path: Path, warmup: int, steps: int, bf16: bool = False,
                              device_name: str = "cpu") -> dict:
    import torch
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.losses import MultipleNegativesRankingLoss
    from sentence_transformers.training_args import BatchSamplers
    from transformers import TrainerCallback

    from ragtrain.model.loading import resolve_model_path

    torch.set_num_threads(THREADS)
    rows = [json.loads(line) for line in triples_path.read_text().splitlines()]
    dataset = Dataset.from_dict({"anchor": [r["query"] for r in rows], "positive": [r["positive"] for r in rows],
                                 "negative": [r["negatives"][0] for r in rows]})
    model = SentenceTransformer(resolve_model_path(MODEL), device=device_name)
    model.max_seq_length = MAX_LEN
    ticks: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            ticks.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            ticks.append(time.perf_counter())

    out = triples_path.parent / "st-out"
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out), per_device_train_batch_size=BATCH, max_steps=warmup + steps, learning_rate=2e-5,
        warmup_ratio=0.1, save_strategy="no", logging_steps=1000, report_to="none", use_cpu=device_name == "cpu",
        batch_sampler=BatchSamplers.NO_DUPLICATES, dataloader_num_workers=0, seed=0, bf16=bf16)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset,
                                         loss=MultipleNegativesRankingLoss(model), callbacks=[Timer()])
    trainer.train()
    durations = [ticks[i + 1] - ticks[i] for i in range(0, len(ticks) - 1, 2)]
    rates = [BATCH / d for d in durations[warmup:]]
    tokenizer = model.tokenizer
    per_triple = statistics.mean(sum(len(tokenizer(t, truncation=True, max_length=MAX_LEN)["input_ids"])
                                     for t in (r["query"], r["positive"], r["negatives"][0])) for r in rows[:500])
    return {"triples_per_s": statistics.median(rates), "tokens_per_s": statistics.median(rates) * per_triple,
            "peak_rss_mb": peak_rss_mib()}


def layer_params(transformer) -> int:
    """Parameters of the encoder layers (embedding lookups cost no matmul FLOPs)."""
    return sum(p.numel() for name, p in transformer.named_parameters() if ".layer." in name)


def matmul_flops(threads: int = THREADS) -> float:
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(10):
        stopwatch = Stopwatch()
        a @ b
        times.append(stopwatch.seconds())
    return 2 * 1024**3 / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triples", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="cuda: both sides on the GPU (bf16 sides where it has bf16); figures as on CPU")
    parser.add_argument("--side", choices=["ragtrain", "ragtrain-bf16", "sentence-transformers", "sentence-transformers-bf16"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:  # child process: one side only, result as JSON on the last line
        bf16 = args.side.endswith("-bf16")
        if args.side.startswith("sentence-transformers"):
            print_result(run_sentence_transformers(args.data, args.warmup, args.steps, bf16, args.device))
        else:
            print_result(run_ragtrain(args.data, args.warmup, args.steps, bf16, args.device))
        return
    require(SCIFACT, "the shared SciFact data")
    import tempfile

    workdir = Path(tempfile.mkdtemp(prefix="bench-train-"))
    data = workdir / "triples.jsonl"
    data.write_text("".join(json.dumps(t) + "\n" for t in build_triples(args.triples)))
    results = {}
    import torch

    from ragtrain.model.runtime import native_bf16

    bf16_sides = ["ragtrain-bf16", "sentence-transformers-bf16"] if native_bf16(torch.device(args.device)) else []
    sides = ["ragtrain", "sentence-transformers", *bf16_sides]
    for side in sides:
        results[side] = run_child([sys.executable, __file__, "--side", side, "--data", str(data), "--warmup",
                                   str(args.warmup), "--steps", str(args.steps), "--device", args.device], side)
    report(results, matmul_flops(), args)
    if bf16_sides:
        ours, peer = results["ragtrain-bf16"], results["sentence-transformers-bf16"]
        print(f"bf16 autocast (native on this CPU): ragtrain {ours['triples_per_s']:.2f} triples/s, peer "
              f"{peer['triples_per_s']:.2f} ({ours['triples_per_s'] / peer['triples_per_s']:.2f}x; "
              f"{ours['triples_per_s'] / results['sentence-transformers']['triples_per_s']:.2f}x the peer's fp32); "
              f"peak RSS {ours['peak_rss_mb']:.0f} vs {peer['peak_rss_mb']:.0f} MB")


def report(results: dict, flops: float, args) -> None:
    ours, peer = results["ragtrain"], results["sentence-transformers"]
    # training FLOPs: 6 x layer parameters per real token, plus attention (QK^T and AV: 4 L^2 H forward, x3 with backward)
    dense = 6 * ours["params"]
    attn_ours = 12 * ours["layers"] * ours["hidden"] * ours["attention_l2_per_s"]
    print(f"SciFact triples: {args.triples}; {MODEL}; batch {BATCH}; max length {MAX_LEN}; fp32; {THREADS} threads; "
          f"warm-up {args.warmup} + {args.steps} measured steps (medians)")
    print(f"{'':24}{'ragtrain':>14}{'sentence-transformers':>24}{'ratio':>9}")
    print(f"{'triples/s':24}{ours['triples_per_s']:14.2f}{peer['triples_per_s']:24.2f}"
          f"{ours['triples_per_s'] / peer['triples_per_s']:9.2f}x")
    print(f"{'real tokens/s':24}{ours['tokens_per_s']:14.0f}{peer['tokens_per_s']:24.0f}")
    print(f"{'peak RSS (MB)':24}{ours['peak_rss_mb']:14.0f}{peer['peak_rss_mb']:24.0f}"
          f"{ours['peak_rss_mb'] / peer['peak_rss_mb']:9.2f}x")
    if ours.get("cuda_peak_mb"):
        print(f"{'CUDA peak allocated MB':24}{ours['cuda_peak_mb']:14.0f}")
    used = dense * ours["tokens_per_s"] + attn_ours
    print(f"fp32 matmul rate ({THREADS} threads): {flops / 1e9:.1f} GFLOP/s; ragtrain's real-token compute "
          f"{used / 1e9:.1f} GFLOP/s = {used / flops:.0%} of it (peer: {dense * peer['tokens_per_s'] / flops:.0%}, "
          "dense part only)")


if __name__ == "__main__":
    main()
