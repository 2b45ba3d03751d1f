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
    PRECISION_HELP,
    QUERY_PROMPT_HELP,
    changed_flags,
    check_precision_name,
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
AUTO_LOG_ROWS = 100  # --log-steps 0: every step of a run this short, about this many rows of a longer one
# --help panels, one per concern
DATA, MODEL, LOSS = "Data and output", "Model and text", "Loss"
OPTIMISATION, BATCHES = "Optimisation and schedule", "Batches, memory and device"
VALIDATION, LOGGING = "Validation and checkpoints", "Logging"
DISTRIBUTED, LORA_MRL = "Distributed (torchrun)", "LoRA and Matryoshka"


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
RUN_RECORD_KEYS = ("device_resolved", "total_steps", "warmup_steps_resolved", "log_steps_resolved", "world_size",
                   "model_settings", "defaulted")


def upgrade_old_options(options: dict) -> dict:
    """Options as ragtrain 0.1's first config.json wrote them, as they mean now. Then `precision` was the autocast
    dtype, used only under `mixed_precision` (so an fp32 run recorded precision bf16); now --precision alone says
    what training computes in. `mixed_precision` false becomes precision fp32, true keeps the dtype, and the key
    goes (it is no option any more). Options of today pass unchanged."""
    key = next((k for k in ("mixed_precision", "mixed-precision") if k in options), None)
    if key is None:
        return options
    upgraded = {k: v for k, v in options.items() if k != key}
    if options[key] is not True:
        upgraded["precision"] = "fp32"
    return upgraded


@dataclass(frozen=True)
class TrainConfig:
    train_data: Path = option(help="Triples (JSONL) from 'ragtrain prepare-data'.", panel=DATA)
    val_data: Path | None = option(None, "Validation triples: their loss at each validation.", panel=DATA)
    eval_data: Path | None = option(None, "A BEIR folder (prepare-data's eval/) or evaluate's JSON file: Recall@10 and "
        "nDCG@10 over its whole corpus at each validation.", panel=DATA)
    eval_split: str = option("val", "Which qrels/<split>.tsv of --eval-data to score.", panel=DATA)
    model: str = option(DEFAULT_MODEL, "The encoder to start from: a Hugging Face name or a local directory.",
                        panel=MODEL)
    output_dir: Path = option(Path("checkpoints/run"), "Run directory: config.json, metrics.jsonl, checkpoints/, "
        "best/, final/.", panel=DATA, decls=("--output-dir", "-o"))
    # model
    pooling: str | None = option(None, "mean, cls, last, max, mean_sqrt_len or weightedmean (default: the model's "
        "own, else mean; last for a decoder).", panel=MODEL)
    output_dim: int | None = option(None, "Add a linear head to this many dimensions (new, it starts random: step 0 "
        "validates the base through it).", panel=MODEL)
    normalize: bool | None = option(None, "L2-normalise (cosine); --no-normalize trains and saves for dot product "
        "(default: the model's own, else cosine).", panel=MODEL, decls=("--normalize/--no-normalize",),
        show_default=False)
    freeze_base: bool = option(False, "Train only the --output-dim head.", panel=MODEL)
    attention_dropout: bool = option(False, "Keep dropout on attention probabilities (off: fused attention keeps no "
        "(B, heads, L, L) tensors, ~30% less memory).", panel=MODEL, decls=("--attention-dropout/--no-attention-dropout",))
    # as evaluate's: a model trained shorter than it is evaluated loses much of its gain (README Results)
    max_seq_length: int | None = option(None, "Tokens kept per text, capped at the model's limit (default: the "
        "model's own, else 256). Train at the length you evaluate at.", panel=MODEL)
    query_prompt: str | None = option(None, QUERY_PROMPT_HELP, panel=MODEL)
    document_prompt: str | None = option(None, DOCUMENT_PROMPT_HELP, panel=MODEL)
    dtype: str = option("fp32", DTYPE_HELP, panel=MODEL)
    # loss
    temperature: float | None = option(None, f"InfoNCE softmax temperature (default by data kind: "
        f"{_by_kind('temperature')}).", panel=LOSS, show_default=False)
    symmetric: bool = option(False, "Add the documents -> queries direction to the loss.", panel=LOSS)
    isotropy_weight: float = option(0.0, "Weight of the SIGReg isotropy regulariser (0: off).", panel=LOSS)
    loss: str = option("infonce", "infonce (in-batch and hard negatives) or distill (learn the teacher scores of "
        "prepare-data --teacher).", panel=LOSS)
    distill_objective: str = option("margin-mse", "Under --loss distill: margin-mse (match the teacher's positive - "
        "negative margins) or kl (match its softmax over the candidates).", panel=LOSS)
    teacher_temperature: float = option(1.0, "Divides the teacher's scores under --loss distill.", panel=LOSS)
    distill_infonce_weight: float = option(0.0, "Under --loss distill, add this times the InfoNCE loss.", panel=LOSS)
    # optimisation
    epochs: int | None = option(None, f"Passes over the triples (default by data kind: {_by_kind('epochs')}).",
                                panel=OPTIMISATION, show_default=False)
    # the global batch: every process's share together, split into grad_accum_steps parts
    batch_size: int = option(32, "Triples per optimizer step; every other passage in the batch is a negative.",
                             panel=BATCHES)
    grad_accum_steps: int = option(1, "Split each batch into this many micro-batches (less memory; negatives then "
        "come from the micro-batch).", panel=BATCHES)
    learning_rate: float | None = option(None, f"Peak learning rate (default by data kind: "
        f"{_by_kind('learning_rate')}; the kind is in prepare-data's manifest.json, else label-free).",
        panel=OPTIMISATION, show_default=False)
    base_learning_rate: float | None = option(None, "Peak rate of the transformer (default --learning-rate).",
                                              panel=OPTIMISATION)
    head_learning_rate: float | None = option(None, "Peak rate of the projection head (default --learning-rate).",
                                              panel=OPTIMISATION)
    weight_decay: float = option(0.01, "AdamW weight decay (never on biases and normalisation layers).",
                                 panel=OPTIMISATION)
    warmup_ratio: float | None = option(None, "Fraction of the steps warming up linearly before cosine decay "
        f"(default by data kind: {_by_kind('warmup_ratio')}).", panel=OPTIMISATION, show_default=False)
    warmup_steps: int | None = option(None, "Warmup steps (overrides --warmup-ratio).", panel=OPTIMISATION)
    min_lr_ratio: float = option(0.0, "The last step's learning rate, as a fraction of the peak.", panel=OPTIMISATION)
    max_grad_norm: float = option(1.0, "Clip the gradient norm to this (0: off).", panel=OPTIMISATION)
    group_by_length: bool = option(True, "Batch triples of similar length (less padding).", panel=BATCHES,
                                   decls=("--group-by-length/--no-group-by-length",))
    seed: int = option(42, "Seed of initialisation, dropout and batch order.", panel=OPTIMISATION)
    # runtime
    device: str = option("auto", "auto (cuda, then mps, then cpu), cpu, cuda or mps.", panel=BATCHES)
    precision: str = option("fp32", PRECISION_HELP, panel=BATCHES)
    threads: int = option(0, "CPU threads for torch (0: torch's default).", panel=BATCHES)
    # scale: memory savers and several processes (torchrun)
    grad_cache: bool | None = option(None, "GradCache: the negatives of the whole --batch-size at the memory of "
        "--mini-batch-size (default: on, unless --grad-accum-steps).", panel=BATCHES,
        decls=("--grad-cache/--no-grad-cache",), show_default=False)
    mini_batch_size: int = option(32, "Texts embedded at once under --grad-cache.", panel=BATCHES)
    gradient_checkpointing: bool = option(False, "Recompute each layer in backward instead of keeping its "
        "activations (less memory, ~30% slower).", panel=BATCHES)
    # validation, logging, checkpoints
    eval_steps: int = option(0, "Validate (and checkpoint) every N steps (0: at each epoch's end only).",
                             panel=VALIDATION)
    eval_batch_size: int = option(64, "Texts per batch when embedding the evaluation corpus.", panel=VALIDATION)
    metric: str | None = option(None, "What picks best/: ndcg@10, recall@10 or val_loss (default: ndcg@10 with "
        "--eval-data, else val_loss).", panel=VALIDATION)
    early_stopping_patience: int = option(0, "Stop after N validations without improvement (0: never).",
                                          panel=VALIDATION)
    log_steps: int = option(0, "Log to metrics.jsonl every N steps, each figure the mean over those steps (0: auto, "
        f"every step of a run under {2 * AUTO_LOG_ROWS} steps, about {AUTO_LOG_ROWS} rows of a longer one).",
        panel=LOGGING)
    report_to: tuple[str, ...] = option((), "Also log to trackers, comma-separated: tensorboard, wandb, mlflow (each "
        "needs its package, e.g. pip install 'ragtrain[tensorboard]'); none: metrics.jsonl only.", panel=LOGGING, cli_type=str,
        cli_default="none", parse=parse_report_to)
    save_steps: int = option(0, "Checkpoint every N steps (0: at validations and epoch ends).", panel=VALIDATION)
    keep_last: int = option(2, "Step checkpoints kept (and the best one).", panel=VALIDATION)
    # "latest" (--resume), a checkpoint directory (--resume-from), or None for a new run
    resume: str | None = option(None, parse=_resume, panel=VALIDATION, flags=(
        Flag("resume", bool, False, "Continue the run in --output-dir from its latest checkpoint."),
        Flag("resume_from", Optional[Path], None, "Continue from this checkpoints/step-N directory.")))
    overwrite: bool = option(False, "Replace the run in --output-dir (only what train wrote there).", panel=DATA)
    average_last: int = option(0, "Also write averaged/, the mean of the last N checkpoints (needs --keep-last N or "
        "more; 0: off).", panel=VALIDATION)
    # several processes (torchrun)
    gather_negatives: bool = option(True, "Under torchrun, score each query against every process's passages (the "
        "whole global batch).", panel=DISTRIBUTED, decls=("--gather-negatives/--no-gather-negatives",))
    # LoRA (peft): the transformer stays frozen, low-rank adapters train
    lora_rank: int = option(0, "Train LoRA adapters of this rank instead of every weight (0: off; needs pip install "
        "'ragtrain[lora]').", panel=LORA_MRL)
    lora_alpha: float = option(16.0, "LoRA alpha: the update is alpha / rank times the low-rank product.",
                               panel=LORA_MRL)
    lora_dropout: float = option(0.0, "Dropout on the LoRA branch's input.", panel=LORA_MRL)
    lora_target_modules: str | None = option(None, "Modules to adapt, comma-separated, e.g. query,value (default: "
        "peft's choice for the architecture).", panel=LORA_MRL)
    lora_save: str = option("merged", "merged: saved models hold the adapter merged in (a normal model); adapter: "
        "the adapter alone, naming its base.", panel=LORA_MRL)
    matryoshka_dims: tuple[int, ...] = option((), "Prefix sizes such as 384,256,128,64: the loss is the mean over "
        "the prefixes, so the first N dimensions work alone (evaluate --truncate-dim N).", panel=LORA_MRL,
        cli_type=str, cli_default="", parse=parse_dims, show_default=False)
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
        check_precision_name(self.precision)
        require(self.threads >= 0, f"--threads must be 0 (torch's default) or more, got {self.threads}")

    def _check_validation_and_checkpoints(self) -> None:
        for flag, value in (("--eval-steps", self.eval_steps), ("--save-steps", self.save_steps),
                            ("--early-stopping-patience", self.early_stopping_patience)):
            require(value >= 0, f"{flag} must be 0 (off) or more, got {value}")
        require(self.log_steps >= 0, f"--log-steps must be 0 (auto) or more, got {self.log_steps}")
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
