"""The `ragtrain` command line: parse flags, build a config, call one function. No logic here."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from ragtrain.config import DEFAULT_MODEL, EvaluateConfig, PrepareConfig, TrainConfig
from ragtrain.errors import UserError
from ragtrain.diskerrors import os_error_line

app = typer.Typer(
    help="Fine-tune text embedding models for retrieval: prepare data, train, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)


def reports_user_errors(command: Callable) -> Callable:
    """A UserError becomes one red line on stderr and exit code 2, never a traceback; so does a file operation
    that failed on a full, read-only or forbidden disk where no writer turned it into a UserError already."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except UserError as exc:
            # one line even when the message quotes user text holding a line break (a file name, a JSON key)
            message = " ".join(str(exc).splitlines())
        except OSError as exc:
            if (message := os_error_line(exc)) is None:
                raise
        err.print(f"[red]error:[/red] {escape(message)}", highlight=False, markup=True, soft_wrap=True)
        raise typer.Exit(code=2)

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
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Where train.jsonl, val.jsonl, eval/ (BEIR layout) and manifest.json are written; built in a temporary folder and renamed at the end.")],
    inputs: Annotated[Optional[list[Path]], typer.Argument(help="Files or folders of documents (.txt, .md, .rst, .html, .jsonl, .json, .csv, .tsv); folders are read recursively. Optional with --pairs or --beir.", show_default=False)] = None,
    pairs: Annotated[Optional[Path], typer.Option(help="Labelled pairs, JSONL with 'query' and 'positive' (or a 'positives' list) and optional 'negatives'; negatives are mined to fill up to --negatives. Document inputs, if given, join the mining and evaluation corpus.")] = None,
    beir: Annotated[Optional[Path], typer.Option(help="A BEIR folder (corpus.jsonl, queries.jsonl, qrels/train.tsv and dev/test). Train queries make the triples; dev and test qrels are kept, unchanged, for evaluation; val.jsonl comes from dev (or, without dev, from --val-fraction of the train queries).")] = None,
    text_field: Annotated[str, typer.Option(help="Field (JSON) or column (CSV/TSV) holding a document's text.")] = "text",
    title_field: Annotated[str, typer.Option(help="Field or column holding a document's title (optional in the data).")] = "title",
    id_field: Annotated[str, typer.Option(help="Field or column holding a document's id (else file name and row number).")] = "_id",
    seed: Annotated[int, typer.Option(help="Seed for splits, queries and negatives: same inputs and seed, same bytes.")] = 42,
    val_fraction: Annotated[float, typer.Option(help="Fraction of documents (pairs: query groups) held out for val.jsonl and eval/qrels/val.tsv.")] = 0.1,
    test_fraction: Annotated[float, typer.Option(help="Fraction of documents (pairs: query groups) held out for eval/qrels/test.tsv. Ignored with --beir, which keeps its own test split.")] = 0.1,
    max_words: Annotated[int, typer.Option(help="Longest passage, in words. Passages follow sections and paragraphs; longer paragraphs are cut at lines, then sentences, then words.")] = 200,
    overlap: Annotated[int, typer.Option(help="Words shared by consecutive windows when a single paragraph or sentence must be cut.")] = 32,
    query_strategy: Annotated[str, typer.Option(help="Label-free queries, a comma-separated list of cloze (a sentence finds the rest of its passage), crop (a random span finds another span of the passage), heading (a section heading or short document's title finds its passage), or 'mix' for all three. The default leaves out cloze, which made a strong base model worse on SciFact.")] = "heading,crop",
    cloze_keep_probability: Annotated[float, typer.Option(help="Chance that an inverse-cloze positive keeps the query sentence (it is removed otherwise).")] = 0.1,
    negatives: Annotated[int, typer.Option(help="Hard negatives per triple (0 for none: in-batch negatives only).")] = 4,
    negative_range: Annotated[str, typer.Option(help="Ranks FIRST-LAST (1-based, inclusive) of the miner's list that negatives are drawn from, at random; skipping the top avoids unlabelled positives.")] = "10-100",
    false_negative_margin: Annotated[float, typer.Option(help="Drop a candidate scoring at least this times the positive's score (the miner's own score: BM25 or dot product); likely an unlabelled positive. Above 1 keeps candidates that outscore the positive.")] = 0.95,
    same_document_negatives: Annotated[bool, typer.Option(help="Allow negatives from the query's own document (off: other passages of it are often relevant too).")] = False,
    miner: Annotated[str, typer.Option(help="bm25 (lexical, no model) or dense (needs --model).")] = "bm25",
    model: Annotated[Optional[str], typer.Option(help="Encoder for --miner dense: a Hugging Face name or local directory.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier prepare-data output in --output-dir (never a folder it did not write, or one holding an input).")] = False,
) -> None:
    """Turn raw documents (or labelled pairs, or a BEIR set) into training triples and a held-out BEIR evaluation set."""
    from ragtrain.config import parse_range
    from ragtrain.prepare import counts_table, prepare

    summary = prepare(PrepareConfig(
        inputs=tuple(inputs or ()), output_dir=output_dir, seed=seed, val_fraction=val_fraction,
        test_fraction=test_fraction, max_words=max_words, overlap=overlap, negatives=negatives,
        query_strategy=query_strategy, overwrite=overwrite, text_field=text_field, title_field=title_field,
        id_field=id_field, pairs=pairs, beir=beir, negative_range=parse_range(negative_range),
        false_negative_margin=false_negative_margin, same_document_negatives=same_document_negatives,
        miner=miner, model=model, cloze_keep_probability=cloze_keep_probability,
    ))
    Console().print(counts_table(summary))


# --------------------------------------------------------------------------------------------------- train
@app.command()
@reports_user_errors
def train(
    train_data: Annotated[Path, typer.Option(help="Triples (JSONL) from 'ragtrain prepare-data'.")],
    val_data: Annotated[Optional[Path], typer.Option(help="Validation triples: validation loss at each validation.")] = None,
    eval_data: Annotated[Optional[Path], typer.Option(help="BEIR directory (e.g. eval/ from prepare-data), or a JSON file as evaluate reads it: Recall@10 and nDCG@10 over its whole corpus at each validation.")] = None,
    eval_split: Annotated[str, typer.Option(help="Which qrels/<split>.tsv of --eval-data to score.")] = "val",
    model: Annotated[str, typer.Option(help="Hugging Face encoder name or local directory to start from.")] = DEFAULT_MODEL,
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Run directory: config.json, metrics.jsonl, checkpoints/, best/, final/.")] = Path("checkpoints/run"),
    pooling: Annotated[str, typer.Option(help="mean, cls or last: how token states become one vector.")] = "mean",
    output_dim: Annotated[Optional[int], typer.Option(help="Add a linear projection head to this many dimensions. A new head starts random, so the step-0 validation that best/ must beat measures the base model through that untrained head, not the base itself: compare with the base model in 'ragtrain evaluate'.")] = None,
    normalize: Annotated[bool, typer.Option("--normalize/--no-normalize", help="L2-normalise embeddings (cosine); --no-normalize trains in Euclidean space.")] = True,
    freeze_base: Annotated[bool, typer.Option(help="Train only the projection head (needs --output-dim).")] = False,
    attention_dropout: Annotated[bool, typer.Option("--attention-dropout/--no-attention-dropout", help="Keep the model's dropout on attention probabilities (off by default: without it fused attention stores no (B, heads, L, L) tensors, ~30% less memory).")] = False,
    max_seq_length: Annotated[int, typer.Option(help="Tokens kept per text, capped (with a warning) at the model's limit; 256 like evaluate's default. Train at the length you evaluate at: on SciFact, a model trained at 128 tokens gained +0.045 nDCG@10 evaluated at 128 but only +0.012 at 256 (README Results).")] = 256,
    temperature: Annotated[float, typer.Option(help="Softmax temperature of the InfoNCE loss. Label-free, 0.1 did better on SciFact and worse on the quickstart sample (README Results): compare on your validation split.")] = 0.05,
    symmetric: Annotated[bool, typer.Option(help="Add the documents -> queries direction to the loss.")] = False,
    isotropy_weight: Annotated[float, typer.Option(help="Weight of the SIGReg isotropy regulariser (0: off).")] = 0.0,
    epochs: Annotated[int, typer.Option(help="Passes over the training triples.")] = 1,
    batch_size: Annotated[int, typer.Option(help="Triples per optimizer step (the last of an epoch may hold fewer); every other passage in it is a negative, except copies of a query's own positive, which its softmax leaves out.")] = 32,
    grad_accum_steps: Annotated[int, typer.Option(help="Split each batch into this many micro-batches (less memory; negatives come from the micro-batch).")] = 1,
    learning_rate: Annotated[float, typer.Option(help="Peak learning rate (after warmup). The default suits label-free triples; with labelled pairs a higher rate did better on SciFact (8e-5, see README Results).")] = 2e-5,
    base_learning_rate: Annotated[Optional[float], typer.Option(help="Peak rate of the transformer (default --learning-rate).")] = None,
    head_learning_rate: Annotated[Optional[float], typer.Option(help="Peak rate of the projection head (default --learning-rate).")] = None,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay (never on biases and normalisation layers).")] = 0.01,
    warmup_ratio: Annotated[float, typer.Option(help="Fraction of steps of linear warmup before cosine decay.")] = 0.1,
    warmup_steps: Annotated[Optional[int], typer.Option(help="Warmup steps (overrides --warmup-ratio).")] = None,
    min_lr_ratio: Annotated[float, typer.Option(help="Learning rate at the last step, as a fraction of the peak.")] = 0.0,
    max_grad_norm: Annotated[float, typer.Option(help="Clip the gradient norm to this (0: off).")] = 1.0,
    group_by_length: Annotated[bool, typer.Option("--group-by-length/--no-group-by-length", help="Batch triples of similar length (less padding).")] = True,
    seed: Annotated[int, typer.Option(help="Seed for initialisation, dropout and batch order.")] = 42,
    device: Annotated[str, typer.Option(help="auto (cuda, then mps, then cpu), cpu, cuda or mps.")] = "auto",
    mixed_precision: Annotated[bool, typer.Option(help="Run the forward pass in --precision (autocast).")] = False,
    precision: Annotated[str, typer.Option(help="fp16 (CUDA, with a gradient scaler) or bf16.")] = "bf16",
    threads: Annotated[int, typer.Option(help="CPU threads for torch (0: torch's default).")] = 0,
    grad_cache: Annotated[bool, typer.Option(help="GradCache: every negative of --batch-size with the activation memory of --mini-batch-size.")] = False,
    mini_batch_size: Annotated[int, typer.Option(help="Texts embedded at once under --grad-cache.")] = 32,
    gradient_checkpointing: Annotated[bool, typer.Option(help="Recompute each layer in backward instead of keeping its activations (less memory, ~30% slower).")] = False,
    gather_negatives: Annotated[bool, typer.Option("--gather-negatives/--no-gather-negatives", help="Under torchrun: score each query against every process's documents (the whole global batch).")] = True,
    eval_steps: Annotated[int, typer.Option(help="Validate (and checkpoint) every N steps; 0: at each epoch's end only.")] = 0,
    eval_batch_size: Annotated[int, typer.Option(help="Texts per batch when embedding the evaluation corpus.")] = 64,
    metric: Annotated[Optional[str], typer.Option(help="What picks best/: ndcg@10, recall@10 or val_loss (default: ndcg@10 with --eval-data, else val_loss).")] = None,
    early_stopping_patience: Annotated[int, typer.Option(help="Stop (at once) after N validations without improvement (0: never).")] = 0,
    log_steps: Annotated[int, typer.Option(help="Write a metrics.jsonl line every N steps.")] = 10,
    save_steps: Annotated[int, typer.Option(help="Checkpoint every N steps (0: at validations and epoch ends).")] = 0,
    keep_last: Annotated[int, typer.Option(help="Step checkpoints kept (plus the best one).")] = 2,
    resume: Annotated[bool, typer.Option(help="Continue the run in --output-dir from its latest checkpoint (warns when the training data changed since).")] = False,
    resume_from: Annotated[Optional[Path], typer.Option(help="Continue from this checkpoints/step-N directory.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace the run in --output-dir: its config.json, metrics.jsonl, checkpoints/, best/ and final/; other files stay.")] = False,
) -> None:
    """Fine-tune an encoder on triples with a contrastive (InfoNCE) loss."""
    from ragtrain.train import train as run_training

    options = {name: value for name, value in locals().items() if name not in ("run_training", "resume", "resume_from")}
    final = run_training(TrainConfig(**options, resume=str(resume_from) if resume_from else "latest" if resume else None))
    Console().print(f"trained model saved to {final}")


# ------------------------------------------------------------------------------------------------ evaluate
@app.command()
@reports_user_errors
def evaluate(
    models: Annotated[list[str], typer.Argument(help="Models to compare; the first is the reference for the change column. Each is a model directory (ragtrain or sentence-transformers), a training run (its best/ where validation kept one, else final/), a checkpoint (checkpoints/step-N, uses model/), a Hugging Face encoder name (mean pooling), or 'bm25' for a BM25 baseline.")],
    eval_data: Annotated[Path, typer.Option(help="BEIR directory (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) such as the eval/ from prepare-data, or a JSON file {\"queries\": {id: text}, \"corpus\": {id: text}, \"relevant_docs\": {query_id: [doc_id, ...]}}.")],
    split: Annotated[str, typer.Option(help="Which qrels/<split>.tsv to score (ignored for a JSON file).")] = "test",
    k: Annotated[str, typer.Option(help="Cut-offs, comma-separated.")] = "1,3,5,10,100",
    output: Annotated[Optional[Path], typer.Option(help="Write every metric, per-query values, settings and timings as JSON here.")] = None,
    run_file: Annotated[Optional[Path], typer.Option(help="Write the rankings as a TREC run file (one per model when several: <stem>.<model><suffix>).")] = None,
    batch_size: Annotated[int, typer.Option(help="Texts per encoding batch.")] = 32,
    max_seq_length: Annotated[int, typer.Option(help="Tokens kept per text (capped at the model's limit).")] = 256,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    precision: Annotated[str, typer.Option(help="Encoding precision: auto (bf16 where the CPU or GPU computes bf16 natively, about twice fp32's speed; else fp32), fp32, bf16 or fp16 (CUDA).")] = "auto",
    cache_dir: Annotated[Optional[Path], typer.Option(help="Where embeddings are cached (default ~/.cache/ragtrain/embeddings, or $XDG_CACHE_HOME/ragtrain/embeddings).")] = None,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Reuse embeddings of an unchanged model, corpus and settings; --no-cache encodes afresh and writes nothing.")] = True,
) -> None:
    """Measure retrieval (Recall, Precision, nDCG, MRR, MAP, hit rate @k) of models side by side."""
    from ragtrain.evaluate import evaluate as run_evaluation

    run_evaluation(EvaluateConfig(
        models=tuple(models), eval_data=eval_data, split=split, k_values=_parse_k(k), output=output,
        batch_size=batch_size, max_seq_length=max_seq_length, device=device, precision=precision,
        run_file=run_file, cache_dir=cache_dir, use_cache=cache,
    ))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
