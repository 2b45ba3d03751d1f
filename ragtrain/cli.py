"""The `ragtrain` command line: parse flags, build a config, call one function. No logic here."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from ragtrain.config import DEFAULT_MODEL, EvaluateConfig, PrepareConfig, TrainConfig
from ragtrain.errors import UserError

app = typer.Typer(
    help="Fine-tune text embedding models for retrieval: prepare data, train, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)


def reports_user_errors(command: Callable) -> Callable:
    """A UserError becomes one red line on stderr and exit code 2, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except UserError as exc:
            err.print(f"[red]error:[/red] {exc}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(code=2) from None

    return wrapper


def _parse_k(value: str) -> tuple[int, ...]:
    try:
        return tuple(sorted({int(k) for k in value.split(",") if k.strip()}))
    except ValueError:
        raise UserError(f"--k must be comma-separated integers such as 1,5,10, got {value!r}") from None


# --------------------------------------------------------------------------------------------- prepare-data
@app.command("prepare-data")
@reports_user_errors
def prepare_data(
    inputs: Annotated[list[Path], typer.Argument(help="Files or folders of documents (.txt, .md, .rst, .jsonl); folders are read recursively.")],
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Where train.jsonl, val.jsonl, eval/ and manifest.json are written.")],
    seed: Annotated[int, typer.Option(help="Seed for splits, queries and negatives: same inputs and seed, same bytes.")] = 42,
    val_fraction: Annotated[float, typer.Option(help="Fraction of documents held out for validation.")] = 0.1,
    test_fraction: Annotated[float, typer.Option(help="Fraction of documents held out for the test evaluation set.")] = 0.1,
    max_words: Annotated[int, typer.Option(help="Longest passage, in words.")] = 200,
    overlap: Annotated[int, typer.Option(help="Words shared by consecutive windows of a paragraph longer than --max-words.")] = 32,
    negatives: Annotated[int, typer.Option(help="BM25 hard negatives per triple.")] = 4,
    query_strategy: Annotated[str, typer.Option(help="How label-free queries are made: mix, cloze, crop or heading.")] = "mix",
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty output directory.")] = False,
) -> None:
    """Turn raw documents into training triples and a held-out BEIR evaluation set."""
    from ragtrain.prepare import prepare

    summary = prepare(PrepareConfig(tuple(inputs), output_dir, seed, val_fraction, test_fraction, max_words,
                                    overlap, negatives, query_strategy, overwrite))
    Console().print(f"wrote {summary.output_dir}: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.counts.items())))


# --------------------------------------------------------------------------------------------------- train
@app.command()
@reports_user_errors
def train(
    train_data: Annotated[Path, typer.Option(help="Triples (JSONL) from 'ragtrain prepare-data'.")],
    val_data: Annotated[Optional[Path], typer.Option(help="Validation triples; validation loss is logged each epoch.")] = None,
    model: Annotated[str, typer.Option(help="Hugging Face encoder name or local directory to start from.")] = DEFAULT_MODEL,
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Run directory: config.json, metrics.jsonl, final/.")] = Path("checkpoints/run"),
    epochs: Annotated[int, typer.Option(help="Passes over the training triples.")] = 1,
    batch_size: Annotated[int, typer.Option(help="Triples per step; every other positive is an in-batch negative.")] = 32,
    learning_rate: Annotated[float, typer.Option(help="Peak learning rate (after warmup).")] = 2e-5,
    max_seq_length: Annotated[int, typer.Option(help="Tokens kept per text.")] = 128,
    device: Annotated[str, typer.Option(help="auto (cuda, then mps, then cpu), cpu, cuda or mps.")] = "auto",
    mixed_precision: Annotated[bool, typer.Option(help="Run the forward pass in --precision (autocast).")] = False,
    precision: Annotated[str, typer.Option(help="fp16 (CUDA, with a gradient scaler) or bf16.")] = "bf16",
    temperature: Annotated[float, typer.Option(help="Softmax temperature of the InfoNCE loss.")] = 0.05,
    warmup_ratio: Annotated[float, typer.Option(help="Fraction of steps of linear warmup before cosine decay.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed for initialisation and batch order.")] = 42,
    overwrite: Annotated[bool, typer.Option(help="Replace a run already in --output-dir.")] = False,
) -> None:
    """Fine-tune an encoder on triples with a contrastive (InfoNCE) loss."""
    from ragtrain.train import train as run_training

    final = run_training(TrainConfig(
        train_data=train_data, val_data=val_data, model=model, output_dir=output_dir, epochs=epochs,
        batch_size=batch_size, learning_rate=learning_rate, max_seq_length=max_seq_length, device=device,
        mixed_precision=mixed_precision, precision=precision, temperature=temperature, warmup_ratio=warmup_ratio,
        seed=seed, overwrite=overwrite,
    ))
    Console().print(f"trained model saved to {final}")


# ------------------------------------------------------------------------------------------------ evaluate
@app.command()
@reports_user_errors
def evaluate(
    models: Annotated[list[str], typer.Argument(help="Models to compare; the first is the reference for the change column. Each is a model directory (ragtrain or sentence-transformers), a training run (uses final/, else best/), a checkpoint (checkpoints/step-N, uses model/), a Hugging Face encoder name (mean pooling), or 'bm25' for a BM25 baseline.")],
    eval_data: Annotated[Path, typer.Option(help="BEIR directory (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) such as the eval/ from prepare-data, or a JSON file {\"queries\": {id: text}, \"corpus\": {id: text}, \"relevant_docs\": {query_id: [doc_id, ...]}}.")],
    split: Annotated[str, typer.Option(help="Which qrels/<split>.tsv to score (ignored for a JSON file).")] = "test",
    k: Annotated[str, typer.Option(help="Cut-offs, comma-separated.")] = "1,3,5,10,100",
    output: Annotated[Optional[Path], typer.Option(help="Write every metric, per-query values, settings and timings as JSON here.")] = None,
    run_file: Annotated[Optional[Path], typer.Option(help="Write the rankings as a TREC run file (one per model when several: <stem>.<model><suffix>).")] = None,
    batch_size: Annotated[int, typer.Option(help="Texts per encoding batch.")] = 32,
    max_seq_length: Annotated[int, typer.Option(help="Tokens kept per text (capped at the model's limit).")] = 256,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    cache_dir: Annotated[Optional[Path], typer.Option(help="Where embeddings are cached (default ~/.cache/ragtrain/embeddings, or $XDG_CACHE_HOME/ragtrain/embeddings).")] = None,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Reuse embeddings of an unchanged model, corpus and settings; --no-cache encodes afresh and writes nothing.")] = True,
) -> None:
    """Measure retrieval (Recall, Precision, nDCG, MRR, MAP, hit rate @k) of models side by side."""
    from ragtrain.evaluate import evaluate as run_evaluation

    run_evaluation(EvaluateConfig(
        models=tuple(models), eval_data=eval_data, split=split, k_values=_parse_k(k), output=output,
        batch_size=batch_size, max_seq_length=max_seq_length, device=device, run_file=run_file,
        cache_dir=cache_dir, use_cache=cache,
    ))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
