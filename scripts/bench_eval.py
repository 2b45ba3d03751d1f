"""Benchmark: `ragtrain evaluate` against sentence-transformers' InformationRetrievalEvaluator, side by side; or, with
--passages N, evaluate alone on a synthetic corpus of N passages (scripts/make_corpus.py) in bounded memory.

SciFact (../shared/data/scifact, dev queries), the bundled all-MiniLM-L6-v2, max length 256, 2 threads.
Each measurement runs in its own subprocess, so peak RSS is separate; wall time covers model loading,
encoding, search and scoring (not interpreter start or imports). ragtrain runs with its default precision
(auto: bf16 where the CPU computes it natively, else fp32) twice on one fresh cache directory, cold (encodes)
then warm (embeddings from the cache), and once more cold in fp32; the peer runs as it comes (fp32).
Every ragtrain row's metrics are compared with the peer's. Usage:

    python scripts/bench_eval.py [--threads 2] [--split dev]
    python scripts/bench_eval.py --passages 1000000 --model tiny [--precision fp32]

With --passages, `--model tiny` is a 2-layer BERT (hidden size 32, 128 tokens, a word vocabulary of the corpus, random weights:
its figures mean nothing, its cost is what a small encoder costs) built beside the corpus; any other value is a model
name or directory. The model is evaluated cold (the corpus encoded into a new cache entry), then warm (the entry read
memory-mapped: the exact search alone), each in its own process: seconds, peak RSS, and where the time went.
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


def run_large(eval_dir: str, model: str, cache_dir: str, precision: str) -> dict:
    """One evaluate run on a synthetic corpus: seconds, metrics and where the time went."""
    from rich.console import Console

    from ragtrain.commands.evaluate import evaluate
    from ragtrain.config.evaluate import EvaluateConfig

    config = EvaluateConfig(models=(model,), eval_data=Path(eval_dir), split="test", k_values=(1, 10, 100), device="cpu",
                            cache_dir=Path(cache_dir), precision=precision, batch_size=128)
    stopwatch = Stopwatch()
    result = evaluate(config, console=Console(file=open("/dev/null", "w")))["models"][model]
    return {"wall_s": stopwatch.seconds(), "ndcg@10": result["metrics"]["ndcg@10"], "cache": result["cache"],
            "timings": result["timings"]}


def tiny_model(directory: Path, corpus: Path) -> Path:
    """A 2-layer BERT, hidden size 32, random weights, over the corpus's 8,000 most frequent words (WordPiece, with
    letters and digits for the rest), saved once in `directory`."""
    if (directory / "config.json").is_file():
        return directory
    import collections
    import json
    import re
    import string

    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words: collections.Counter = collections.Counter()
    with corpus.open() as handle:
        for _, line in zip(range(50_000), handle):
            words.update(re.findall(r"[a-z]+", json.loads(line)["text"].lower()))
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars),
             *(w for w, _ in words.most_common(8000) if len(w) > 1)]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=128)).save_pretrained(directory)
    BertTokenizerFast(str(directory / "vocab.txt"), do_lower_case=True).save_pretrained(directory)
    return directory


def large(args: argparse.Namespace) -> None:
    """--passages: cold and warm evaluate runs on each synthetic corpus, one process each."""
    from make_corpus import make_corpus

    print(f"evaluate on synthetic corpora, model {args.model}, precision {args.precision}, {args.threads} threads")
    print(f"{'passages':>10} {'run':<5} {'seconds':>8} {'peak MiB':>9} {'encode s':>9} {'search s':>9} {'ndcg@10':>8} cache")
    for passages in args.passages:
        folder = make_corpus(passages)
        model = str(tiny_model(folder / "tiny-model", folder / "docs.jsonl")) if args.model == "tiny" else args.model
        with tempfile.TemporaryDirectory(prefix="ragtrain-bench-cache-") as cache_dir:
            for run in ("cold", "warm"):
                command = [sys.executable, __file__, "--worker", "large", "--threads", str(args.threads), "--eval-dir",
                           str(folder / "beir"), "--model", model, "--cache-dir", cache_dir, "--precision", args.precision]
                r = run_child(command, f"{passages} {run}")
                encode = sum(v for k, v in r["timings"].items() if k.startswith("encode_"))
                print(f"{passages:>10,} {run:<5} {r['wall_s']:8.1f} {r['peak_rss_mib']:9.0f} {encode:9.1f} "
                      f"{r['timings']['search_s']:9.1f} {r['ndcg@10']:8.4f} {r['cache']}", flush=True)


def worker(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    if args.worker == "peer":
        out = run_peer(args.split, args.max_length)
    elif args.worker == "large":
        out = run_large(args.eval_dir, args.model, args.cache_dir, args.precision)
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
    parser.add_argument("--passages", type=int, nargs="+", help="synthetic corpora of these many passages instead")
    parser.add_argument("--model", default="tiny", help="with --passages: 'tiny' or a model name or directory")
    parser.add_argument("--precision", default="auto", help="auto, fp32, bf16 (with --passages; SciFact runs both)")
    parser.add_argument("--worker", choices=["peer", "ragtrain", "large"], help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)
    parser.add_argument("--eval-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    if args.passages:
        return large(args)
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
