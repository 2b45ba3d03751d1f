"""Benchmark: `ragtrain evaluate` against sentence-transformers' InformationRetrievalEvaluator, side by side.

SciFact (../shared/data/scifact, dev queries), the bundled all-MiniLM-L6-v2, max length 256, 2 threads.
Each measurement runs in its own subprocess, so peak RSS is separate; wall time covers model loading,
encoding, search and scoring (not interpreter start or imports). ragtrain runs with its default precision
(auto: bf16 where the CPU computes it natively, else fp32) twice on one fresh cache directory, cold (encodes)
then warm (embeddings from the cache), and once more cold in fp32; the peer runs as it comes (fp32).
Every ragtrain row's metrics are compared with the peer's. Usage:

    python scripts/bench_eval.py [--threads 2] [--split dev]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from benchlib import MODEL, SCIFACT, Stopwatch, peak_rss_mib, print_result, require, run_child

COMPARED = ("ndcg@10", "recall@10", "recall@100", "mrr@10")


def run_peer(split: str, max_length: int) -> dict:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.evaluation import InformationRetrievalEvaluator

    from ragtrain.data.evaldata import load_eval_data
    from ragtrain.model.loading import resolve_model_path

    data = load_eval_data(SCIFACT, split)  # the same texts (title + " " + text) and judgements for both
    stopwatch = Stopwatch()
    model = SentenceTransformer(resolve_model_path(MODEL), device="cpu")
    model.max_seq_length = max_length
    evaluator = InformationRetrievalEvaluator(
        queries=dict(zip(data.query_ids, data.query_texts)), corpus=dict(zip(data.corpus_ids, data.corpus_texts)),
        relevant_docs={q: set(docs) for q, docs in data.qrels.items()}, mrr_at_k=[10], ndcg_at_k=[10],
        accuracy_at_k=[10], precision_recall_at_k=[10, 100], map_at_k=[100], show_progress_bar=False)
    scores = evaluator(model)
    return {"wall_s": stopwatch.seconds(), "metrics": {m: scores[f"cosine_{m}"] for m in COMPARED}}


def run_ragtrain(split: str, max_length: int, cache_dir: str, precision: str) -> dict:
    from rich.console import Console

    from ragtrain.commands.evaluate import evaluate
    from ragtrain.config.evaluate import EvaluateConfig

    config = EvaluateConfig(models=(MODEL,), eval_data=SCIFACT, split=split, k_values=(1, 10, 100),
                            max_seq_length=max_length, device="cpu", cache_dir=Path(cache_dir), precision=precision)
    stopwatch = Stopwatch()
    results = evaluate(config, console=Console(file=open("/dev/null", "w")))
    result = results["models"][MODEL]
    return {"wall_s": stopwatch.seconds(), "metrics": {m: result["metrics"][m] for m in COMPARED}, "cache": result["cache"],
            "precision": result["precision"]}


def worker(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    if args.worker == "peer":
        out = run_peer(args.split, args.max_length)
    else:
        out = run_ragtrain(args.split, args.max_length, args.cache_dir, args.precision)
    out["peak_rss_mib"] = peak_rss_mib()
    print_result(out)


def measure(label: str, name: str, args: argparse.Namespace, extra: list[str]) -> dict:
    command = [sys.executable, __file__, "--worker", name, "--threads", str(args.threads), "--split", args.split,
               "--max-length", str(args.max_length), *extra]
    result = run_child(command, label)
    print(f"  {label:<22} {result['wall_s']:8.1f} s   peak RSS {result['peak_rss_mib']:7.0f} MiB", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--split", default="dev")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--skip-peer", action="store_true", help="time ragtrain only (cold and warm)")
    parser.add_argument("--worker", choices=["peer", "ragtrain"], help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="auto", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    require(SCIFACT / "corpus.jsonl", "../shared/data/scifact beside the repository")
    print(f"SciFact {args.split}, {MODEL}, max length {args.max_length}, {args.threads} threads")
    with tempfile.TemporaryDirectory(prefix="ragtrain-bench-cache-") as cache_dir:
        cold = measure("ragtrain cold", "ragtrain", args, ["--cache-dir", cache_dir])
        warm = measure("ragtrain warm", "ragtrain", args, ["--cache-dir", cache_dir])
        fp32 = measure("ragtrain cold, fp32", "ragtrain", args, ["--cache-dir", cache_dir + "/fp32", "--precision", "fp32"])
        if args.skip_peer:
            return
        peer = measure("peer (fp32)", "peer", args, [])
    assert warm["cache"] == "hit", warm
    print(f"\nragtrain's default precision here: {cold['precision']}")
    print(f"speed-up against the peer: cold {peer['wall_s'] / cold['wall_s']:.2f}x, "
          f"warm (cached) {peer['wall_s'] / warm['wall_s']:.1f}x, cold in fp32 {peer['wall_s'] / fp32['wall_s']:.2f}x")
    print(f"{'metric':<12}{'peer':>10}{'ragtrain':>10}{'|diff|':>10}{'fp32':>10}{'|diff|':>10}")
    for m in COMPARED:
        diffs = [abs(peer["metrics"][m] - ours["metrics"][m]) for ours in (cold, fp32)]
        print(f"{m:<12}{peer['metrics'][m]:>10.4f}{cold['metrics'][m]:>10.4f}{diffs[0]:>10.5f}{fp32['metrics'][m]:>10.4f}"
              f"{diffs[1]:>10.5f}" + ("" if max(diffs) <= 1e-3 else "  > 0.001"))


if __name__ == "__main__":
    main()
