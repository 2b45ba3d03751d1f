"""Frozen configuration for each command, validated before any model or data is loaded.

Each command's options live in one dataclass; `validate()` raises UserError with a message that names
the option and the fix. The CLI builds these from flags; tests and scripts build them directly.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

from ragtrain.errors import UserError
from ragtrain.fileio import check_writable
from ragtrain.outputdir import check_location, check_prepare_output
from ragtrain.readers import Fields

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


SEED_LIMIT = 2**32  # numpy's generators take seeds in [0, 2**32)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(message)


def _check_seed(seed: int) -> None:
    _check(0 <= seed < SEED_LIMIT, f"--seed must be in [0, {SEED_LIMIT - 1}] (numpy's range), got {seed}")


def as_dict(config) -> dict:
    """A config as JSON-ready data (paths as strings, tuples as lists)."""

    def plain(value):
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        return value

    return {f.name: plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


# --------------------------------------------------------------------------------------------- prepare-data
PREPARE_MINERS = ("bm25", "dense")


def parse_range(value: str) -> tuple[int, int]:
    """'10-100' -> (10, 100): 1-based ranks, both ends included."""
    try:
        start, end = (int(v) for v in value.replace(":", "-").split("-"))
    except ValueError:
        raise UserError(f"--negative-range must look like 10-100 (first and last rank), got {value!r}") from None
    return start, end


@dataclass(frozen=True)
class PrepareConfig:
    inputs: tuple[Path, ...]
    output_dir: Path
    seed: int = 42
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    max_words: int = 200
    overlap: int = 32
    negatives: int = 4
    query_strategy: str = "heading,crop"  # no cloze by default: on SciFact it cost 0.024 dev nDCG@10 (see README)
    overwrite: bool = False
    text_field: str = "text"
    title_field: str = "title"
    id_field: str = "_id"
    pairs: Path | None = None
    beir: Path | None = None
    negative_range: tuple[int, int] = (10, 100)
    false_negative_margin: float = 0.95
    same_document_negatives: bool = False
    miner: str = "bm25"
    model: str | None = None
    cloze_keep_probability: float = 0.1

    @property
    def fields(self) -> Fields:
        """The JSON fields or CSV columns that --text-field, --title-field and --id-field name."""
        return Fields(self.text_field, self.title_field, self.id_field)

    def validate(self) -> "PrepareConfig":
        from ragtrain.queries import parse_strategies

        _check(len(self.inputs) > 0 or self.pairs is not None or self.beir is not None,
               "no input given; pass files or folders of documents, --pairs FILE or --beir DIR")
        _check(not (self.pairs is not None and self.beir is not None), "--pairs and --beir cannot be combined; choose one")
        _check(not (self.beir is not None and self.inputs), "--beir takes no document inputs; drop them or drop --beir")
        for path in self.inputs:
            _check(path.exists(), f"input {path} not found; check the path")
        _check(self.pairs is None or self.pairs.is_file(), f"--pairs file {self.pairs} not found; check the path")
        _check(self.beir is None or (self.beir / "corpus.jsonl").is_file(),
               f"--beir {self.beir} has no corpus.jsonl; pass a BEIR folder (corpus.jsonl, queries.jsonl, qrels/)")
        _check(0 <= self.val_fraction < 1, f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        _check(0 <= self.test_fraction < 1, f"--test-fraction must be in [0, 1), got {self.test_fraction}")
        _check(
            self.val_fraction + self.test_fraction < 1,
            f"--val-fraction + --test-fraction = {self.val_fraction + self.test_fraction:g} leaves no training "
            "data; make their sum below 1",
        )
        _check_seed(self.seed)
        _check(self.max_words >= 8, f"--max-words must be at least 8, got {self.max_words}")
        _check(
            0 <= self.overlap < self.max_words,
            f"--overlap must be in [0, --max-words), got {self.overlap} with --max-words {self.max_words}",
        )
        _check(self.negatives >= 0, f"--negatives must be 0 or more, got {self.negatives}")
        start, end = self.negative_range
        _check(1 <= start <= end, f"--negative-range must be FIRST-LAST with 1 <= FIRST <= LAST, got {start}-{end}")
        _check(0 < self.false_negative_margin < math.inf,
               f"--false-negative-margin must be a positive number, got {self.false_negative_margin}")
        _check(self.miner in PREPARE_MINERS, f"--miner must be bm25 or dense, got {self.miner!r}")
        _check(self.miner != "dense" or bool(self.model), "--miner dense needs --model NAME_OR_PATH")
        _check(0 <= self.cloze_keep_probability <= 1,
               f"--cloze-keep-probability must be in [0, 1], got {self.cloze_keep_probability}")
        _check(bool(parse_strategies(self.query_strategy)),
               f"--query-strategy must be mix or a comma-separated list of cloze, crop, heading; got {self.query_strategy!r}")
        for option, name in (("--text-field", self.text_field), ("--title-field", self.title_field), ("--id-field", self.id_field)):
            _check(bool(name.strip()), f"{option} must name a field, got an empty string")
        check_location(self.output_dir, [*self.inputs, self.pairs, self.beir])
        check_prepare_output(self.output_dir, self.overwrite)
        check_writable(self.output_dir.parent, "--output-dir")  # the new output is built beside the old
        return self


# --------------------------------------------------------------------------------------------------- train
POOLINGS = ("mean", "cls", "last")
METRICS = ("ndcg@10", "recall@10", "val_loss")


@dataclass(frozen=True)
class TrainConfig:
    train_data: Path
    val_data: Path | None = None
    eval_data: Path | None = None
    eval_split: str = "val"
    model: str = DEFAULT_MODEL
    output_dir: Path = Path("checkpoints/run")
    # model
    pooling: str = "mean"
    output_dim: int | None = None
    normalize: bool = True
    freeze_base: bool = False
    attention_dropout: bool = False
    max_seq_length: int = 256  # as evaluate's: a model trained shorter than it is evaluated loses much of its gain
    # loss
    temperature: float = 0.05
    symmetric: bool = False
    isotropy_weight: float = 0.0
    # optimisation
    epochs: int = 1
    batch_size: int = 32  # triples per optimizer step (the global batch), split into grad_accum_steps parts
    grad_accum_steps: int = 1
    learning_rate: float = 2e-5
    base_learning_rate: float | None = None
    head_learning_rate: float | None = None
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    warmup_steps: int | None = None
    min_lr_ratio: float = 0.0
    max_grad_norm: float = 1.0
    group_by_length: bool = True
    seed: int = 42
    # runtime
    device: str = "auto"
    mixed_precision: bool = False
    precision: str = "bf16"
    threads: int = 0
    # scale: memory savers and several processes (torchrun)
    grad_cache: bool = False  # the whole batch's negatives with a mini-batch's activation memory
    mini_batch_size: int = 32  # texts embedded at once under --grad-cache
    gradient_checkpointing: bool = False
    gather_negatives: bool = True  # under torchrun: score each query against every rank's documents
    # validation, logging, checkpoints
    eval_steps: int = 0
    eval_batch_size: int = 64
    metric: str | None = None
    early_stopping_patience: int = 0
    log_steps: int = 10
    save_steps: int = 0
    keep_last: int = 2
    resume: str | None = None
    overwrite: bool = False

    @property
    def base_lr(self) -> float:
        return self.base_learning_rate if self.base_learning_rate is not None else self.learning_rate

    @property
    def head_lr(self) -> float:
        return self.head_learning_rate if self.head_learning_rate is not None else self.learning_rate

    @property
    def selection_metric(self) -> str | None:
        """--metric, else nDCG@10 with an eval set, else validation loss with validation triples, else none."""
        if self.metric:
            return self.metric
        return "ndcg@10" if self.eval_data else "val_loss" if self.val_data else None

    def validate(self) -> "TrainConfig":
        for flag, path in (("--train-data", self.train_data), ("--val-data", self.val_data)):
            _check(path is None or not path.is_dir(), f"{flag} {path} is a folder; pass a triples file such as "
                                                      "train.jsonl or val.jsonl from 'ragtrain prepare-data'")
        _check(self.train_data.is_file(), f"train file {self.train_data} not found; run 'ragtrain prepare-data' first")
        _check(self.val_data is None or self.val_data.is_file(), f"validation file {self.val_data} not found; check --val-data")
        _check(self.eval_data is None or self.eval_data.exists(),  # a BEIR folder, or a JSON file as evaluate reads
               f"evaluation set {self.eval_data} not found; pass the eval/ folder from 'ragtrain prepare-data' to --eval-data")
        _check(self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}")
        _check(self.batch_size >= 2, f"--batch-size must be at least 2 (in-batch negatives), got {self.batch_size}")
        _check(self.grad_accum_steps >= 1, f"--grad-accum-steps must be at least 1, got {self.grad_accum_steps}")
        _check(self.batch_size >= 2 * self.grad_accum_steps,
               f"--batch-size {self.batch_size} split into --grad-accum-steps {self.grad_accum_steps} leaves micro-batches "
               "below 2 triples; raise --batch-size or lower --grad-accum-steps")
        for flag, rate in (("--learning-rate", self.learning_rate), ("--base-learning-rate", self.base_lr),
                           ("--head-learning-rate", self.head_lr)):
            _check(rate > 0, f"{flag} must be positive, got {rate}")
        _check(self.max_seq_length >= 8, f"--max-seq-length must be at least 8, got {self.max_seq_length}")
        _check_seed(self.seed)
        _check(self.pooling in POOLINGS, f"--pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        _check(self.output_dim is None or self.output_dim >= 1, f"--output-dim must be at least 1, got {self.output_dim}")
        _check(not self.freeze_base or self.output_dim is not None,
               "--freeze-base trains only the projection head, but there is none; add --output-dim N or drop --freeze-base")
        _check(self.device in {"auto", "cpu", "cuda", "mps"}, f"--device must be auto, cpu, cuda or mps, got {self.device!r}")
        _check(self.precision in {"fp16", "bf16"}, f"--precision must be fp16 or bf16, got {self.precision!r}")
        _check(self.threads >= 0, f"--threads must be 0 (torch's default) or more, got {self.threads}")
        for flag, value in (("--learning-rate", self.learning_rate), ("--base-learning-rate", self.base_lr),
                            ("--head-learning-rate", self.head_lr), ("--temperature", self.temperature),
                            ("--isotropy-weight", self.isotropy_weight), ("--weight-decay", self.weight_decay),
                            ("--max-grad-norm", self.max_grad_norm)):
            _check(math.isfinite(value), f"{flag} must be a finite number, got {value}")
        _check(self.temperature > 0, f"--temperature must be positive, got {self.temperature}")
        _check(self.isotropy_weight >= 0, f"--isotropy-weight must be 0 (off) or positive, got {self.isotropy_weight}")
        _check(0 <= self.warmup_ratio < 1, f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio}")
        _check(self.warmup_steps is None or self.warmup_steps >= 0, f"--warmup-steps must be 0 or more, got {self.warmup_steps}")
        _check(0 <= self.min_lr_ratio <= 1, f"--min-lr-ratio must be in [0, 1], got {self.min_lr_ratio}")
        _check(self.weight_decay >= 0, f"--weight-decay must be 0 or more, got {self.weight_decay}")
        _check(self.max_grad_norm >= 0, f"--max-grad-norm must be 0 (off) or positive, got {self.max_grad_norm}")
        for flag, value in (("--eval-steps", self.eval_steps), ("--save-steps", self.save_steps),
                            ("--early-stopping-patience", self.early_stopping_patience)):
            _check(value >= 0, f"{flag} must be 0 (off) or more, got {value}")
        _check(self.log_steps >= 1, f"--log-steps must be at least 1, got {self.log_steps}")
        _check(self.keep_last >= 1, f"--keep-last must be at least 1, got {self.keep_last}")
        _check(self.eval_batch_size >= 1, f"--eval-batch-size must be at least 1, got {self.eval_batch_size}")
        _check(self.metric is None or self.metric in METRICS, f"--metric must be one of {', '.join(METRICS)}, got {self.metric!r}")
        metric = self.selection_metric
        _check(metric is None or (metric == "val_loss" and self.val_data) or (metric != "val_loss" and self.eval_data),
               f"--metric {metric} needs {'--val-data' if metric == 'val_loss' else '--eval-data'}")
        _check(not self.early_stopping_patience or metric,
               "--early-stopping-patience needs something to watch; pass --eval-data or --val-data")
        _check(not (self.resume and self.overwrite), "--resume and --overwrite contradict each other; pass one")
        _check(self.mini_batch_size >= 1, f"--mini-batch-size must be at least 1, got {self.mini_batch_size}")
        _check(not (self.grad_cache and self.grad_accum_steps > 1),
               "--grad-cache keeps the whole batch's negatives at a mini-batch's memory, which --grad-accum-steps "
               "cannot; drop --grad-accum-steps (set --mini-batch-size instead)")
        _check(not self.output_dir.is_file(), f"--output-dir {self.output_dir} is a file; choose a directory")
        check_location(self.output_dir, self.inputs())
        check_writable(self.output_dir, "--output-dir")
        return self

    def inputs(self) -> list[Path | None]:
        """What the run reads: its output directory must neither hold nor sit inside any of these. The run's
        own checkpoints (--resume-from RUN/checkpoints/step-N) are no input in that sense."""
        paths = [self.train_data, self.val_data, self.eval_data]
        if not self.resume and Path(self.model).exists():  # a resumed run loads the checkpoint's model instead
            paths.append(Path(self.model))
        if self.resume and self.resume != "latest":
            own = (self.output_dir / "checkpoints").resolve()
            if not Path(self.resume).resolve().is_relative_to(own):
                paths.append(Path(self.resume))
        return paths


# ------------------------------------------------------------------------------------------------ evaluate
@dataclass(frozen=True)
class EvaluateConfig:
    models: tuple[str, ...]
    eval_data: Path
    split: str = "test"
    k_values: tuple[int, ...] = (1, 3, 5, 10, 100)
    output: Path | None = None
    batch_size: int = 32
    max_seq_length: int = 256
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 where the hardware computes it natively, else fp32
    run_file: Path | None = None
    cache_dir: Path | None = None  # None: $XDG_CACHE_HOME/ragtrain/embeddings (~/.cache/ragtrain/embeddings)
    use_cache: bool = True

    def validate(self) -> "EvaluateConfig":
        _check(len(self.models) > 0, "no model given; pass a model name or directory, or 'bm25'")
        duplicates = sorted({m for m in self.models if self.models.count(m) > 1})
        _check(not duplicates, f"model {duplicates[0]!r} is given twice; pass each model once" if duplicates else "")
        _check(self.eval_data.exists(), f"evaluation data {self.eval_data} not found; pass the eval/ folder from "
                                        "'ragtrain prepare-data', a BEIR directory or a JSON file")
        _check(len(self.k_values) > 0 and all(k >= 1 for k in self.k_values), f"--k values must be 1 or more, got {self.k_values}")
        _check(self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}")
        _check(self.max_seq_length >= 8, f"--max-seq-length must be at least 8, got {self.max_seq_length}")
        _check(self.device in {"auto", "cpu", "cuda", "mps"}, f"--device must be auto, cpu, cuda or mps, got {self.device!r}")
        _check(self.precision in {"auto", "fp32", "bf16", "fp16"},
               f"--precision must be auto, fp32, bf16 or fp16, got {self.precision!r}")
        for option, path in (("--output", self.output), ("--run-file", self.run_file)):
            _check(path is None or not path.is_dir(), f"{option} {path} is a directory; give a file name")
            # a device or pipe (/dev/full, a FIFO) would be replaced by the rename of a regular file
            _check(path is None or not path.exists() or path.is_file(),
                   f"{option} {path} exists and is not a regular file; give a file name")
        _check(self.cache_dir is None or not self.cache_dir.is_file(), f"--cache-dir {self.cache_dir} is a file; give a directory")
        for option, path in (("--output", self.output), ("--run-file", self.run_file)):
            if path is not None:
                check_writable(path.parent, option)
        # no probe of --cache-dir: a cache that cannot be written only warns (the run goes on without it)
        return self
