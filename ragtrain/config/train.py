"""train's options: one frozen TrainConfig, each option's default and help written once. The options that depend on
the kind of training data (learning rate, epochs, temperature, warmup) are None until the command fills them in
(config.datakinds); validate() checks every option without reading the disk."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ragtrain.config.common import (
    DEFAULT_MODEL,
    DEVICES,
    DOCUMENT_PROMPT_HELP,
    DTYPE_HELP,
    QUERY_PROMPT_HELP,
    changed_flags,
    check_seed,
    check_text_options,
    require,
)
from ragtrain.config.datakinds import LABEL_FREE_DEFAULTS, LABELLED_DEFAULTS
from ragtrain.config.options import Flag, option
from ragtrain.errors import UserError
from ragtrain.model.settings import TextOptions
from ragtrain.model.textspec import POOLINGS

LOSSES = ("infonce", "distill")
DISTILL_OBJECTIVES = ("margin-mse", "kl")
REPORT_BACKENDS = ("tensorboard", "wandb", "mlflow")  # --report-to's trackers (training.trackers)
SELECTION_METRICS = ("ndcg@10", "recall@10", "val_loss")  # what may pick best/
TRAIN_PRECISIONS = ("fp16", "bf16")  # autocast under --mixed-precision


def _by_kind(name: str) -> str:
    """'labelled 8e-05, label-free 2e-05': an option's two defaults, for its help."""
    return f"labelled {LABELLED_DEFAULTS[name]:g}, label-free {LABEL_FREE_DEFAULTS[name]:g}"


def parse_report_to(value: str) -> tuple[str, ...]:
    """'tensorboard,wandb' -> ('tensorboard', 'wandb'); 'none' or nothing -> (). Checked in validate()."""
    names = tuple(dict.fromkeys(name.strip() for name in value.split(",") if name.strip()))
    return () if names == ("none",) else names


def parse_dims(value: str) -> tuple[int, ...]:
    """'384,256,128,64' -> (384, 256, 128, 64), in the order given (validate() wants largest first, each once);
    '' -> () (off). An empty item ('16,') is refused, not dropped."""
    if not value.strip():
        return ()
    try:
        return tuple(int(d) for d in value.split(","))
    except ValueError:
        raise UserError(f"--matryoshka-dims must be comma-separated integers such as 384,256,128,64, got {value!r}") from None


def _resume(resume: bool, resume_from: Path | None) -> str | None:
    """--resume-from DIR wins over --resume (the latest checkpoint); neither: a new run."""
    return str(resume_from) if resume_from else "latest" if resume else None


# --------------------------------------------------------------------------------------------------- train
# What train's config.json holds beside the options: what the run resolved them to. Read back as --config, they are
# ignored (the run resolves them again). `defaulted` names the options that took the data kind's default: the file
# holds their values, so the repeated run is given them and takes no default.
RUN_RECORD_KEYS = ("device_resolved", "total_steps", "warmup_steps_resolved", "world_size", "model_settings", "defaulted")


@dataclass(frozen=True)
class TrainConfig:
    train_data: Path = option(help="Triples (JSONL) from 'ragtrain prepare-data'.")
    val_data: Path | None = option(None, "Validation triples: validation loss at each validation.")
    eval_data: Path | None = option(None, "BEIR directory (e.g. eval/ from prepare-data), or a JSON file as evaluate "
        "reads it: Recall@10 and nDCG@10 over its whole corpus at each validation.")
    eval_split: str = option("val", "Which qrels/<split>.tsv of --eval-data to score.")
    model: str = option(DEFAULT_MODEL, "Hugging Face encoder name or local directory to start from.")
    output_dir: Path = option(Path("checkpoints/run"), "Run directory: config.json, metrics.jsonl, checkpoints/, "
        "best/, final/.", decls=("--output-dir", "-o"))
    # model
    pooling: str | None = option(None, "mean, cls, last, max, mean_sqrt_len or weightedmean: how token states become "
        "one vector (default: the model's own, from 1_Pooling/config.json; else mean, last for a decoder).")
    output_dim: int | None = option(None, "Add a linear projection head to this many dimensions. A new head starts "
        "random, so the step-0 validation that best/ must beat measures the base model through that untrained head, "
        "not the base itself: compare with the base model in 'ragtrain evaluate'.")
    normalize: bool | None = option(None, "L2-normalise embeddings (cosine); --no-normalize trains in Euclidean "
        "space and saves the model with the dot-product similarity (default: the model's own, else cosine).",
        decls=("--normalize/--no-normalize",), show_default=False)
    freeze_base: bool = option(False, "Train only the projection head (needs --output-dim).")
    attention_dropout: bool = option(False, "Keep the model's dropout on attention probabilities (off by default: "
        "without it fused attention stores no (B, heads, L, L) tensors, ~30% less memory).",
        decls=("--attention-dropout/--no-attention-dropout",))
    # as evaluate's: a model trained shorter than it is evaluated loses much of its gain
    max_seq_length: int | None = option(None, "Tokens kept per text, capped (with a warning) at the model's limit "
        "(default: the model's own max_seq_length from sentence_bert_config.json, else 256, like evaluate's). Train at the length you evaluate at: on SciFact, a model trained at 128 tokens gained "
        "+0.045 nDCG@10 evaluated at 128 but only +0.012 at 256 (README Results).")
    query_prompt: str | None = option(None, QUERY_PROMPT_HELP)
    document_prompt: str | None = option(None, DOCUMENT_PROMPT_HELP)
    dtype: str = option("fp32", DTYPE_HELP)
    # LoRA (peft): the transformer stays frozen, low-rank adapters train
    lora_rank: int = option(0, "Train LoRA adapters of this rank through peft instead of every weight (0: off; "
        "needs pip install 'ragtrain[lora]').")
    lora_alpha: float = option(16.0, "LoRA scaling alpha (the update is alpha / rank times the low-rank product).")
    lora_dropout: float = option(0.0, "Dropout on the LoRA branch's input.")
    lora_target_modules: str | None = option(None, "Comma-separated module names to adapt (e.g. query,value); "
        "default: the linear layers peft chooses for the architecture.")
    lora_save: str = option("merged", "merged: saved models hold the adapter merged into the weights (a normal "
        "model directory that loads anywhere); adapter: they keep the base model's name and the adapter alone.")
    # loss
    temperature: float | None = option(None, "Softmax temperature of the InfoNCE loss (default by data kind: "
        f"{_by_kind('temperature')}). Label-free, 0.1 did better on SciFact and worse on the quickstart sample (README "
        "Results): compare on your validation split.", show_default=False)
    symmetric: bool = option(False, "Add the documents -> queries direction to the loss.")
    isotropy_weight: float = option(0.0, "Weight of the SIGReg isotropy regulariser (0: off).")
    matryoshka_dims: tuple[int, ...] = option((), "Matryoshka: comma-separated dimensions such as 384,256,128,64; the "
        "loss is the mean of the contrastive loss of each prefix of the embedding, renormalised (the full dimension "
        "is added when missing), so the first N dimensions work on their own (evaluate --truncate-dim N).",
        cli_type=str, cli_default="", parse=parse_dims, show_default=False)
    loss: str = option("infonce", "infonce (contrastive, in-batch and hard negatives) or distill (learn the teacher "
        "scores the triples carry, from prepare-data --teacher).")
    distill_objective: str = option("margin-mse", "Under --loss distill: margin-mse (the student's score margins "
        "positive - negative match the teacher's) or kl (the student's softmax over a triple's candidates matches "
        "the teacher's). Student scores are cosine / --temperature, teacher scores / --teacher-temperature.")
    teacher_temperature: float = option(1.0, "Divides the teacher's scores under --loss distill.")
    distill_infonce_weight: float = option(0.0, "Under --loss distill: add this times the InfoNCE loss.")
    # optimisation
    epochs: int | None = option(None, f"Passes over the training triples (default by data kind: {_by_kind('epochs')}).",
                                show_default=False)
    # the global batch: every process's share together, split into grad_accum_steps parts
    batch_size: int = option(32, "Triples per optimizer step (the last of an epoch may hold fewer); every other "
        "passage in it is a negative, except copies of a query's own positive, which its softmax leaves out.")
    grad_accum_steps: int = option(1, "Split each batch into this many micro-batches (less memory; negatives come "
        "from the micro-batch).")
    learning_rate: float | None = option(None, "Peak learning rate (after warmup) (default by data kind: "
        f"{_by_kind('learning_rate')}). The kind is the data_kind of prepare-data's manifest.json beside --train-data "
        "(labelled: --pairs or --beir; label-free: documents); without a manifest, the label-free set. Labelled: the "
        "best rate measured on SciFact's claims; label-free: what did best there without labels (README Results).",
        show_default=False)
    base_learning_rate: float | None = option(None, "Peak rate of the transformer (default --learning-rate).")
    head_learning_rate: float | None = option(None, "Peak rate of the projection head (default --learning-rate).")
    weight_decay: float = option(0.01, "AdamW weight decay (never on biases and normalisation layers).")
    warmup_ratio: float | None = option(None, "Fraction of steps of linear warmup before cosine decay (default by "
        f"data kind: {_by_kind('warmup_ratio')}).", show_default=False)
    warmup_steps: int | None = option(None, "Warmup steps (overrides --warmup-ratio).")
    min_lr_ratio: float = option(0.0, "Learning rate at the last step, as a fraction of the peak.")
    max_grad_norm: float = option(1.0, "Clip the gradient norm to this (0: off).")
    group_by_length: bool = option(True, "Batch triples of similar length (less padding).",
        decls=("--group-by-length/--no-group-by-length",))
    seed: int = option(42, "Seed for initialisation, dropout and batch order.")
    # runtime
    device: str = option("auto", "auto (cuda, then mps, then cpu), cpu, cuda or mps.")
    mixed_precision: bool = option(False, "Run the forward pass in --precision (autocast).")
    precision: str = option("bf16", "fp16 (CUDA, with a gradient scaler) or bf16.")
    threads: int = option(0, "CPU threads for torch (0: torch's default).")
    # scale: memory savers and several processes (torchrun)
    grad_cache: bool = option(False, "GradCache: every negative of --batch-size with the activation memory of "
        "--mini-batch-size.")
    mini_batch_size: int = option(32, "Texts embedded at once under --grad-cache.")
    gradient_checkpointing: bool = option(False, "Recompute each layer in backward instead of keeping its "
        "activations (less memory, ~30% slower).")
    gather_negatives: bool = option(True, "Under torchrun: score each query against every process's documents (the "
        "whole global batch).", decls=("--gather-negatives/--no-gather-negatives",))
    # validation, logging, checkpoints
    eval_steps: int = option(0, "Validate (and checkpoint) every N steps; 0: at each epoch's end only.")
    eval_batch_size: int = option(64, "Texts per batch when embedding the evaluation corpus.")
    metric: str | None = option(None, "What picks best/: ndcg@10, recall@10 or val_loss (default: ndcg@10 with "
        "--eval-data, else val_loss).")
    early_stopping_patience: int = option(0, "Stop (at once) after N validations without improvement (0: never).")
    log_steps: int = option(10, "Write a metrics.jsonl line every N steps.")
    report_to: tuple[str, ...] = option((), "Also log every metrics.jsonl number to these trackers, comma-separated: "
        "tensorboard (RUN/tensorboard/), wandb, mlflow; each needs its package (pip install 'ragtrain[tensorboard]'). "
        "none: metrics.jsonl only.", cli_type=str, cli_default="none", parse=parse_report_to)
    save_steps: int = option(0, "Checkpoint every N steps (0: at validations and epoch ends).")
    keep_last: int = option(2, "Step checkpoints kept (plus the best one).")
    # "latest" (--resume), a checkpoint directory (--resume-from), or None for a new run
    resume: str | None = option(None, parse=_resume, flags=(
        Flag("resume", bool, False, "Continue the run in --output-dir from its latest checkpoint (warns when the "
             "training data changed since)."),
        Flag("resume_from", Optional[Path], None, "Continue from this checkpoints/step-N directory.")))
    overwrite: bool = option(False, "Replace the run in --output-dir: its config.json, metrics.jsonl, checkpoints/, "
        "best/, final/ and tensorboard/; other files stay.")
    average_last: int = option(0, "Also write averaged/: the mean of the weights of the last N checkpoints (the last "
        "one is the final weights); needs --keep-last N or more. 0: off.")
    # which of learning_rate, epochs, temperature, warmup_ratio were left unset and took the data kind's default
    defaulted: tuple[str, ...] = option((), cli=False)

    def text_options(self) -> TextOptions:
        """What the flags ask of the model's text settings (the model's own files decide the rest when it loads)."""
        return TextOptions(self.pooling, self.normalize, self.max_seq_length, self.query_prompt, self.document_prompt,
                           self.matryoshka_dims, self.output_dim)

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
        """Every option on its own and with the others; reads no disk (commands/preflight.py does that). Options
        still unset (None) wait for the data kind's defaults (config.datakinds) and are not checked here."""
        self._check_model()
        self._check_lora()
        self._check_loss()
        self._check_optimisation()
        self._check_batches()
        self._check_runtime()
        self._check_validation_and_checkpoints()
        return self

    def _check_model(self) -> None:
        check_text_options(self.text_options(), self.dtype)
        require(self.pooling is None or self.pooling in POOLINGS,
                f"--pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        require(self.output_dim is None or self.output_dim >= 1, f"--output-dim must be at least 1, got {self.output_dim}")
        require(not self.freeze_base or self.output_dim is not None, "--freeze-base trains only the projection head, "
                "but there is none; add --output-dim N or drop --freeze-base")
        dims = self.matryoshka_dims
        require(all(d >= 1 for d in dims), f"--matryoshka-dims must be positive, got {','.join(map(str, dims))}")
        require(list(dims) == sorted(set(dims), reverse=True), "--matryoshka-dims must be given largest first, each "
                f"once, such as {','.join(map(str, sorted(set(dims), reverse=True)))}; got {','.join(map(str, dims))}")

    def _check_lora(self) -> None:
        require(self.lora_rank >= 0, f"--lora-rank must be 0 (off) or more, got {self.lora_rank}")
        require(self.lora_alpha > 0, f"--lora-alpha must be positive, got {self.lora_alpha}")
        require(0 <= self.lora_dropout < 1, f"--lora-dropout must be in [0, 1), got {self.lora_dropout}")
        require(self.lora_save in ("merged", "adapter"), f"--lora-save must be merged or adapter, got {self.lora_save!r}")
        require(not (self.lora_rank and self.freeze_base), "--lora-rank and --freeze-base both choose what trains; pass one")
        unused = changed_flags(self, ("lora_target_modules", "lora_alpha", "lora_dropout", "lora_save"))
        require(self.lora_rank or not unused, f"{', '.join(unused)} shape{'s' if len(unused) == 1 else ''} LoRA "
                "adapters, which only --lora-rank N turns on; add --lora-rank or drop "
                f"{'it' if len(unused) == 1 else 'them'}")

    def _check_loss(self) -> None:
        for flag, value in (("--temperature", self.temperature), ("--isotropy-weight", self.isotropy_weight)):
            require(value is None or math.isfinite(value), f"{flag} must be a finite number, got {value}")
        require(self.temperature is None or self.temperature > 0, f"--temperature must be positive, got {self.temperature}")
        require(self.loss in LOSSES, f"--loss must be infonce or distill, got {self.loss!r}")
        require(self.distill_objective in DISTILL_OBJECTIVES,
                f"--distill-objective must be margin-mse or kl, got {self.distill_objective!r}")
        require(0 < self.teacher_temperature < math.inf,
                f"--teacher-temperature must be a positive number, got {self.teacher_temperature}")
        require(0 <= self.distill_infonce_weight < math.inf,
                f"--distill-infonce-weight must be 0 or positive, got {self.distill_infonce_weight}")
        require(not (self.loss == "distill" and self.grad_cache), "--grad-cache computes InfoNCE only; drop it or "
                "--loss distill")
        require(not (self.loss == "distill" and (self.symmetric or self.isotropy_weight > 0 or self.matryoshka_dims)),
                "--symmetric, --isotropy-weight and --matryoshka-dims shape the InfoNCE loss, which --loss distill "
                "replaces; drop them")
        require(self.isotropy_weight >= 0, f"--isotropy-weight must be 0 (off) or positive, got {self.isotropy_weight}")

    def _check_optimisation(self) -> None:
        require(self.epochs is None or self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}")
        for flag, rate in (("--learning-rate", self.learning_rate), ("--base-learning-rate", self.base_learning_rate),
                           ("--head-learning-rate", self.head_learning_rate)):
            require(rate is None or (math.isfinite(rate) and rate > 0), f"{flag} must be a positive number, got {rate}")
        for flag, value in (("--weight-decay", self.weight_decay), ("--max-grad-norm", self.max_grad_norm)):
            require(math.isfinite(value), f"{flag} must be a finite number, got {value}")
        require(self.warmup_ratio is None or 0 <= self.warmup_ratio < 1,
                f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio}")
        require(self.warmup_steps is None or self.warmup_steps >= 0, f"--warmup-steps must be 0 or more, got {self.warmup_steps}")
        require(0 <= self.min_lr_ratio <= 1, f"--min-lr-ratio must be in [0, 1], got {self.min_lr_ratio}")
        require(self.weight_decay >= 0, f"--weight-decay must be 0 or more, got {self.weight_decay}")
        require(self.max_grad_norm >= 0, f"--max-grad-norm must be 0 (off) or positive, got {self.max_grad_norm}")
        check_seed(self.seed)

    def _check_batches(self) -> None:
        require(self.batch_size >= 2, f"--batch-size must be at least 2 (in-batch negatives), got {self.batch_size}")
        require(self.grad_accum_steps >= 1, f"--grad-accum-steps must be at least 1, got {self.grad_accum_steps}")
        require(self.batch_size >= 2 * self.grad_accum_steps,
                f"--batch-size {self.batch_size} split into --grad-accum-steps {self.grad_accum_steps} leaves "
                "micro-batches below 2 triples; raise --batch-size or lower --grad-accum-steps")
        require(self.mini_batch_size >= 1, f"--mini-batch-size must be at least 1, got {self.mini_batch_size}")
        require(not (self.grad_cache and self.grad_accum_steps > 1),
                "--grad-cache keeps the whole batch's negatives at a mini-batch's memory, which --grad-accum-steps "
                "cannot; drop --grad-accum-steps (set --mini-batch-size instead)")

    def _check_runtime(self) -> None:
        require(self.device in DEVICES, f"--device must be auto, cpu, cuda or mps, got {self.device!r}")
        require(self.precision in TRAIN_PRECISIONS, f"--precision must be fp16 or bf16, got {self.precision!r}")
        require(self.mixed_precision or self.precision == "bf16", f"--precision {self.precision} is the autocast "
                "precision of --mixed-precision, which is off; add --mixed-precision or drop --precision")
        require(self.threads >= 0, f"--threads must be 0 (torch's default) or more, got {self.threads}")

    def _check_validation_and_checkpoints(self) -> None:
        for flag, value in (("--eval-steps", self.eval_steps), ("--save-steps", self.save_steps),
                            ("--early-stopping-patience", self.early_stopping_patience)):
            require(value >= 0, f"{flag} must be 0 (off) or more, got {value}")
        require(self.log_steps >= 1, f"--log-steps must be at least 1, got {self.log_steps}")
        for backend in self.report_to:
            require(backend in REPORT_BACKENDS, "--report-to takes none or a comma-separated list of "
                    f"{', '.join(REPORT_BACKENDS)}; got {backend!r}")
        require(self.keep_last >= 1, f"--keep-last must be at least 1, got {self.keep_last}")
        require(self.eval_batch_size >= 1, f"--eval-batch-size must be at least 1, got {self.eval_batch_size}")
        require(self.metric is None or self.metric in SELECTION_METRICS,
                f"--metric must be one of {', '.join(SELECTION_METRICS)}, got {self.metric!r}")
        metric = self.selection_metric
        require(metric is None or (metric == "val_loss" and self.val_data) or (metric != "val_loss" and self.eval_data),
                f"--metric {metric} needs {'--val-data' if metric == 'val_loss' else '--eval-data'}")
        require(not self.early_stopping_patience or metric,
                "--early-stopping-patience needs something to watch; pass --eval-data or --val-data")
        require(not (self.resume and self.overwrite), "--resume and --overwrite contradict each other; pass one")
        require(self.average_last >= 0, f"--average-last must be 0 (off) or more, got {self.average_last}")
        require(self.average_last <= self.keep_last, f"--average-last {self.average_last} averages checkpoints that "
                f"--keep-last {self.keep_last} deletes; pass --keep-last {self.average_last} or more")
