"""ragtrain: fine-tune text embedding models for retrieval.

The command line's three steps, from Python (a notebook, a pipeline), taking the config dataclasses the command line
builds (ragtrain.config) and returning where the results went and what they measured:

    from ragtrain import evaluate, prepare_data, train
    from ragtrain.config.evaluate import EvaluateConfig
    from ragtrain.config.prepare import PrepareConfig
    from ragtrain.config.train import TrainConfig

    data = prepare_data(PrepareConfig(inputs=(Path("docs"),), output_dir=Path("data/docs")))
    run = train(TrainConfig(train_data=data.train_file, eval_data=data.eval_dir, output_dir=Path("runs/docs")))
    results = evaluate(EvaluateConfig(models=("bm25", str(run.run_dir)), eval_data=data.eval_dir))
    results["models"][str(run.run_dir)]["metrics"]["ndcg@10"]

Each function runs the command as the command line does (its checks, its files, its printed table); a mistake in the
options or the data raises ragtrain.errors.UserError with the one line the command line would print. Each imports its
command when called, so `import ragtrain` loads neither torch nor a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ragtrain.version import VERSION

if TYPE_CHECKING:
    from ragtrain.config.evaluate import EvaluateConfig
    from ragtrain.config.prepare import PrepareConfig
    from ragtrain.config.train import TrainConfig

__version__ = VERSION


@dataclass(frozen=True)
class PreparedData:
    """What prepare_data wrote: the folder, its three parts as train and evaluate take them, and the counts the
    command line prints (documents read, triples, queries per split, ...; the same as manifest.json's)."""

    output_dir: Path
    train_file: Path  # train.jsonl: TrainConfig(train_data=...)
    val_file: Path  # val.jsonl: TrainConfig(val_data=...)
    eval_dir: Path  # eval/, BEIR layout: TrainConfig(eval_data=...), EvaluateConfig(eval_data=...)
    counts: dict[str, int]


@dataclass(frozen=True)
class TrainedRun:
    """What train wrote: the run directory, its final model, its best one (None when nothing was validated), and
    every validation's figures in order (step 0 is the base model), as metrics.jsonl holds them."""

    run_dir: Path
    final: Path
    best: Path | None
    validation: list[dict]


def prepare_data(config: PrepareConfig) -> PreparedData:
    """`ragtrain prepare-data`: documents, labelled pairs or a BEIR folder to triples and an evaluation set."""
    from ragtrain.commands.prepare import prepare
    from ragtrain.files.names import EVAL_DIR, TRAIN_TRIPLES, VAL_TRIPLES

    summary = prepare(config)
    out = summary.output_dir
    return PreparedData(out, out / TRAIN_TRIPLES, out / VAL_TRIPLES, out / EVAL_DIR, dict(summary.counts))


def train(config: TrainConfig) -> TrainedRun:
    """`ragtrain train`: fine-tune, keeping best/ by the validation metric; the options left unset take the
    defaults of the data's kind, as on the command line."""
    from ragtrain.commands.train import train as run_training
    from ragtrain.files.names import BEST, METRICS_LOG
    from ragtrain.model.card import validation_rows

    final = run_training(config)
    run_dir = final.parent
    best = run_dir / BEST
    return TrainedRun(run_dir, final, best if best.is_dir() else None, validation_rows(run_dir / METRICS_LOG))


def evaluate(config: EvaluateConfig) -> dict:
    """`ragtrain evaluate`: the table printed, and every figure returned as `--output` writes it:
    results["models"][model]["metrics"]["ndcg@10"], per-query values, settings and timings."""
    from ragtrain.commands.evaluate import evaluate as run_evaluation

    return run_evaluation(config)
