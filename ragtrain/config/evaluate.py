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
    QUERY_PROMPT_HELP,
    changed_flags,
    check_text_options,
    require,
)
from ragtrain.config.options import option
from ragtrain.errors import UserError
from ragtrain.model.settings import TextOptions
from ragtrain.retrieval.hybrid import HYBRID_PREFIX

EVALUATE_PRECISIONS = ("auto", "fp32", "bf16", "fp16")
BM25_ROW = "bm25"  # the model name of the BM25 baseline row
# what only a dense model reads: given with bm25 alone, each would be ignored without a word
DENSE_ONLY = ("max_seq_length", "query_prompt", "document_prompt", "truncate_dim", "dtype", "device", "precision",
              "batch_size", "cache_dir", "use_cache", "update_card")


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
        require(self.precision in EVALUATE_PRECISIONS,
               f"--precision must be auto, fp32, bf16 or fp16, got {self.precision!r}")
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
