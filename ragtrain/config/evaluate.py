"""evaluate's options: one frozen EvaluateConfig, each option's default and help written once. validate() reads no
disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ragtrain.config.common import (
    DEFAULT_HYBRID_WEIGHT,
    DEVICES,
    DOCUMENT_PROMPT_HELP,
    DTYPE_HELP,
    PRECISION_HELP,
    QUERY_PROMPT_HELP,
    changed_flags,
    check_precision_name,
    check_text_options,
    require,
)
from ragtrain.config.options import option
from ragtrain.errors import UserError
from ragtrain.model.settings import TextOptions
from ragtrain.retrieval.hybrid import HYBRID_PREFIX

BM25_ROW = "bm25"  # the model name of the BM25 baseline row
# what only a dense model reads: given with bm25 alone, each would be ignored without a word
DENSE_ONLY = ("max_seq_length", "query_prompt", "document_prompt", "truncate_dim", "dtype", "device", "precision",
              "batch_size", "cache_dir", "use_cache", "update_card")
# --help panels
MODELS, OUTPUTS, ENCODING, HYBRID = "Models and data", "Outputs", "Encoding and cache", "Hybrid rows"


def parse_k(value: str) -> tuple[int, ...]:
    """'10,1,5' -> (1, 5, 10): the cut-offs, sorted, each once."""
    try:
        return tuple(sorted({int(k) for k in value.split(",") if k.strip()}))
    except ValueError:
        raise UserError(f"--k must be comma-separated integers such as 1,5,10, got {value!r}") from None


# ------------------------------------------------------------------------------------------------ evaluate
@dataclass(frozen=True)
class EvaluateConfig:
    models: tuple[str, ...] = option(
        help="Models to compare, the first the reference of the change column: a model directory, a training run "
        "(its best/, else final/), a checkpoint, a Hugging Face name, 'bm25', or hybrid:MODEL (BM25 and MODEL "
        "fused).", panel=MODELS, argument=True, cli_type=list[str], parse=tuple)
    eval_data: Path = option(
        help="A BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) such as prepare-data's eval/, or a JSON "
        "file {\"queries\": {id: text}, \"corpus\": {id: text}, \"relevant_docs\": {query_id: [doc_id, ...]}}.",
        panel=MODELS)
    split: str = option("test", "Which qrels/<split>.tsv to score (not for a JSON file).", panel=MODELS)
    k_values: tuple[int, ...] = option((1, 3, 5, 10, 100), "Cut-offs, comma-separated.", panel=MODELS, decls=("--k",),
                                       cli_type=str, cli_default="1,3,5,10,100", parse=parse_k)
    output: Path | None = option(None, "Write every metric, per-query values, settings and timings here (JSON).",
                                 panel=OUTPUTS)
    run_file: Path | None = option(None, "Write the rankings as a TREC run file (several models: "
        "<stem>.<model><suffix>).", panel=OUTPUTS)
    batch_size: int = option(32, "Texts per encoding batch.", panel=ENCODING)
    max_seq_length: int | None = option(None, "Tokens kept per text, capped at the model's limit (default: the "
        "model's own, else 256).", panel=ENCODING)
    query_prompt: str | None = option(None, QUERY_PROMPT_HELP, panel=ENCODING)
    document_prompt: str | None = option(None, DOCUMENT_PROMPT_HELP, panel=ENCODING)
    truncate_dim: int | None = option(None, "Score the first N dimensions of each embedding (a Matryoshka model's "
        "smaller index); cached whole, so several N encode once.", panel=ENCODING)
    dtype: str = option("fp32", DTYPE_HELP, panel=ENCODING)
    device: str = option("auto", "auto (cuda, then mps, then cpu), cpu, cuda or mps.", panel=ENCODING)
    # auto: bf16 where the hardware computes it natively (about twice fp32's speed), else fp32
    precision: str = option("auto", PRECISION_HELP, panel=ENCODING)
    # None: $XDG_CACHE_HOME/ragtrain/embeddings (~/.cache/ragtrain/embeddings)
    cache_dir: Path | None = option(None, "Where embeddings are cached (default ~/.cache/ragtrain/embeddings).",
                                    panel=ENCODING)
    use_cache: bool = option(True, "Reuse the embeddings of an unchanged model, corpus and settings; --no-cache "
        "encodes afresh and writes nothing.", panel=ENCODING, decls=("--cache/--no-cache",))
    update_card: bool = option(False, "Add the results to the model card (README.md) of each ragtrain model, with "
        "the change against the first model.", panel=OUTPUTS)
    # hybrid:MODEL rows
    hybrid_weight: float | None = option(None, "BM25's weight w in a hybrid:MODEL row: w * bm25 + (1 - w) * cosine, "
        f"each z-scored per query (default {DEFAULT_HYBRID_WEIGHT}).", panel=HYBRID, show_default=False)
    hybrid_tune_split: str | None = option(None, "Choose the hybrid weight (0 to 1 by 0.05, best nDCG@10) on this "
        "other qrels split, e.g. train.", panel=HYBRID)
    # the --config file read: an input no output may replace (options.build sets it)
    config_file: Path | None = option(None, cli=False, recorded=False)

    def text_options(self) -> TextOptions:
        """What the flags ask of every dense model's text settings (each model's own files decide the rest)."""
        return TextOptions(max_length=self.max_seq_length, query_prompt=self.query_prompt,
                           document_prompt=self.document_prompt)

    def validate(self) -> "EvaluateConfig":
        require(len(self.models) > 0, "no model given; pass a model name or directory, or 'bm25'")
        duplicates = sorted({m for m in self.models if self.models.count(m) > 1})
        require(not duplicates, f"model {duplicates[0]!r} is given twice; pass each model once" if duplicates else "")
        require(len(self.k_values) > 0 and all(k >= 1 for k in self.k_values), f"--k values must be 1 or more, got {self.k_values}")
        require(self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}")
        check_text_options(self.text_options(), self.dtype)
        require(self.truncate_dim is None or self.truncate_dim >= 1, f"--truncate-dim must be at least 1, got {self.truncate_dim}")
        require(self.device in DEVICES, f"--device must be auto, cpu, cuda or mps, got {self.device!r}")
        check_precision_name(self.precision)
        require(self.hybrid_weight is None or 0 <= self.hybrid_weight <= 1,
               f"--hybrid-weight must be in [0, 1], got {self.hybrid_weight}")
        require(self.hybrid_weight is None or self.hybrid_tune_split is None,
               "--hybrid-weight and --hybrid-tune-split contradict each other; give the weight or the split to tune on")
        require(self.hybrid_tune_split != self.split, f"--hybrid-tune-split {self.split} is the evaluated split: tuning "
               "on it would overstate the hybrid row; choose another split (e.g. train)")
        require(any(m.startswith(HYBRID_PREFIX) for m in self.models) or (self.hybrid_weight, self.hybrid_tune_split) == (None, None),
               "--hybrid-weight and --hybrid-tune-split apply to hybrid:MODEL rows; add one or drop them")
        for model in self.models:
            require(not model.startswith(HYBRID_PREFIX) or len(model) > len(HYBRID_PREFIX),
                   "a hybrid row needs its dense model: hybrid:MODEL, e.g. hybrid:sentence-transformers/all-MiniLM-L6-v2")
        unused = changed_flags(self, DENSE_ONLY) if all(m == BM25_ROW for m in self.models) else []
        require(not unused, f"{', '.join(unused)} appl{'ies' if len(unused) == 1 else 'y'} to dense models, and only "
               "bm25 is evaluated; add a model or drop " + ("it" if len(unused) == 1 else "them"))
        return self
