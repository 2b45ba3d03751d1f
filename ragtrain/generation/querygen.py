"""Queries written by a generator: the prompt, the on-disk cache, the generation loop and the cleaning rules.

The default prompt is few-shot (a system line and two passage -> question examples from other fields than
the user's data is likely to be about), which small instruction models follow far better than an instruction
alone: SmolLM2-135M answered a zero-shot prompt with "What is the answer to this question?" for a third of
SciFact abstracts. What they still get wrong, cleaning catches: chat formatting, meta questions ("the
passage"), content copied from the examples or from the passage, and queries with no word of the passage.

Outputs are cached per generator (model and sampling) in one append-only JSONL file, one line per prompt
(keyed by the sha256 of the rendered messages, so a changed prompt or passage misses), written and synced
after every batch: a killed or failed run keeps everything generated before, and a rerun generates only
what is missing. A torn last line (a kill mid-write) is skipped on reading.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import time
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from ragtrain.errors import UserError
from ragtrain.files.jsonfiles import read_json, read_numbered_jsonl, read_utf8
from ragtrain.messages import tell
from ragtrain.retrieval.cache import default_cache_dir

PLACEHOLDER = "{passage}"
TITLE_PLACEHOLDER = "{title}"
PROMPT_PASSAGE_WORDS = 100  # of a passage the prompt shows: on a CPU the prompt's tokens dominate the cost
SYSTEM = ("You write one short search question that the given passage answers. Use the passage's own topic and "
          "terms. Do not copy a sentence, and do not mention the passage.")
EXAMPLES = (
    ("Title: Tidal locking of moons\nMost large moons in the solar system always show the same face to their planet. "
     "Tidal forces slowed their rotation over millions of years until one day lasted exactly one orbit.",
     "Why do large moons always show the same face to their planet?"),
    ("Title: Copy-on-write file systems\nInstead of overwriting blocks in place, a copy-on-write file system writes "
     "changed data to free blocks and then updates the pointers, so a crash never leaves a half-written block.",
     "How does copy-on-write protect a file system from crashes?"),
)
USER_TEMPLATE = f"Passage:\nTitle: {TITLE_PLACEHOLDER}\n{PLACEHOLDER}"
# --generator-examples: queries the user's own users ask, shown instead of the built-in examples (InPars and
# Promptagator prompt with a handful of the target task's queries; a query alone, with no passage, needs no judgement)
EXAMPLES_SYSTEM = ("You write one short search query that the given passage answers, in the style of the queries "
                   "this collection's users write. Some of their queries:\n{examples}\nUse the passage's own topic and "
                   "terms. Do not copy a sentence, and do not mention the passage.")
MAX_EXAMPLES = 32  # a prompt's examples: on a CPU every token of the prompt costs, for every passage
MIN_WORDS, MAX_WORDS = 3, 32
COPY_SHARE = 0.7  # of a query's words in one run found verbatim in the passage: a copied sentence, not a query
COPY_MIN_RUN = 6
STOP_WORDS = set("""a about above after again against all am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has have having he her here
hers herself him himself his how i if in into is it its itself just me more most my myself no nor not now of off on
once only or other our ours ourselves out over own same she should so some such than that the their theirs them
themselves then there these they this those through to too under until up very was we were what when where which while
who whom why will with would you your yours yourself yourselves""".split())
META = re.compile(r"\b(the|this|above|given|following|that) (passage|text|article|abstract|paragraph|excerpt|document)\b"
                  r"|\bthe above\b|\bas (mentioned|described|stated)\b", re.IGNORECASE)
PREFIX = re.compile(r"^\s*(?:[-*#>\u2022]+\s*|\(?\d{1,2}[.):]\s+|(?:question|query|q|answer|assistant|search "
                    r"question)\s*\d*\s*[:\-]\s*)+", re.IGNORECASE)
QUOTES = "\"'`\u201c\u201d\u2018\u2019*_ "


# ------------------------------------------------------------------------------------------------- prompt
def default_prompt() -> list[dict]:
    """The few-shot chat: system line, two example exchanges, and the user turn with the placeholders."""
    messages = [{"role": "system", "content": SYSTEM}]
    for passage, question in EXAMPLES:
        messages += [{"role": "user", "content": f"Passage:\n{passage}"}, {"role": "assistant", "content": question}]
    return messages + [{"role": "user", "content": USER_TEMPLATE}]


def examples_prompt(examples: list[str]) -> list[dict]:
    """The chat whose system line shows the user's example queries, then the user turn with the placeholders."""
    listed = "\n".join(f"- {example}" for example in examples)
    return [{"role": "system", "content": EXAMPLES_SYSTEM.replace("{examples}", listed)},
            {"role": "user", "content": USER_TEMPLATE}]


def read_examples(path: Path) -> list[str]:
    """--generator-examples: one example query per line of a text file (blank lines skipped), or the "query" (or
    "text") of each row of a .jsonl file; 1 to MAX_EXAMPLES of them."""
    if not path.is_file():
        raise UserError(f"--generator-examples file {path} not found; check the path")
    not_text = f"--generator-examples {path} is not a UTF-8 text file; give one example query per line"
    if "\0" in (text := read_utf8(path, not_text)):
        raise UserError(not_text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if path.suffix.lower() == ".jsonl":
        rows = [row for _, row in read_numbered_jsonl(path, "--generator-examples file")]
        lines = [str(row.get("query") or row.get("text") or "").strip() if isinstance(row, dict) else "" for row in rows]
        if not all(lines):
            raise UserError(f"--generator-examples {path}: every row needs a 'query' (or 'text'); fix the file")
    if not 1 <= len(lines) <= MAX_EXAMPLES:
        raise UserError(f"--generator-examples {path} holds {len(lines)} example queries; give 1 to {MAX_EXAMPLES} "
                        "(a handful, such as 8, is what the prompt needs)")
    return lines


def read_prompt(path: Path) -> list[dict]:
    """--generator-prompt: a .json list of chat messages, or any other text file as the one user message.
    The text must hold {passage} (and may hold {title})."""
    if not path.is_file():
        raise UserError(f"--generator-prompt file {path} not found; check the path")
    if path.suffix.lower() == ".json":
        messages = read_json(path)
        if not (isinstance(messages, list) and messages and all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in messages)):
            raise UserError(f"--generator-prompt {path}: expected a JSON list of {{\"role\", \"content\"}} messages")
    else:
        data = path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is None or "\0" in text:
            raise UserError(f"--generator-prompt {path} is not a UTF-8 text file; give a text file (the user message) "
                            "or a .json list of chat messages")
        messages = [{"role": "user", "content": text}]
    if not any(PLACEHOLDER in m["content"] for m in messages):
        raise UserError(f"--generator-prompt {path} has no {PLACEHOLDER} placeholder; put {PLACEHOLDER} where the "
                        "passage goes")
    return messages


def render(template: list[dict], title: str, passage: str) -> list[dict]:
    """The prompt's messages (`template`) with this passage (its first PROMPT_PASSAGE_WORDS words) and title filled in."""
    words = passage.split()
    shown = " ".join(words[:PROMPT_PASSAGE_WORDS]) if len(words) > PROMPT_PASSAGE_WORDS else passage
    return [{"role": m["role"], "content": m["content"].replace(TITLE_PLACEHOLDER, title or "(none)")
             .replace(PLACEHOLDER, shown)} for m in template]


def prompt_examples(template: list[dict], examples: list[str] = ()) -> list[str]:
    """The example queries a prompt shows (its assistant turns, and --generator-examples): a query that repeats
    one of them was copied, not written."""
    return [m["content"] for m in template if m["role"] == "assistant"] + list(examples)


def completion_text(messages: list[dict]) -> str:
    """A chat as plain text for a base (completion) model that has no chat template: the system line, each example
    passage followed by "Query:" and its query, then the passage to write for and "Query:" (the model continues
    after it; cleaning keeps the first line)."""
    parts = [m["content"].strip() + "\n\n" for m in messages if m["role"] == "system"]
    for m in messages:
        if m["role"] == "user":
            parts.append(m["content"].strip() + "\nQuery:")
        elif m["role"] == "assistant":
            parts.append(" " + m["content"].strip() + "\n\n")
    return "".join(parts)


# -------------------------------------------------------------------------------------------------- cache
class QueryCache:
    """Generated outputs of one generator: {sha256 of the rendered messages: [outputs]}, in an append-only file."""

    def __init__(self, directory: Path | None, identity: str):
        self.path = None if directory is None else directory / f"{hashlib.sha256(identity.encode()).hexdigest()[:32]}.jsonl"
        self.entries: dict[str, list[str]] = {}
        if self.path is not None and self.path.is_file():
            for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    row = json.loads(line)
                    self.entries[row["key"]] = [str(o) for o in row["outputs"]]
                except (ValueError, KeyError, TypeError):
                    continue  # a line torn by a kill mid-write

    @staticmethod
    def key(messages: list[dict]) -> str:
        return hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()

    def add(self, items: list[tuple[str, list[str]]]) -> None:
        """Record a batch, on disk first (synced), so that a kill after this returns loses nothing of it."""
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a+b") as handle:
                handle.seek(0, os.SEEK_END)
                if handle.tell() and (handle.seek(-1, os.SEEK_END), handle.read(1))[1] != b"\n":
                    handle.write(b"\n")  # after a torn line: start a fresh one
                handle.write("".join(json.dumps({"key": k, "outputs": o}) + "\n" for k, o in items).encode())
                handle.flush()
                os.fsync(handle.fileno())
        self.entries.update(items)


def default_query_cache_dir() -> Path:
    """Beside evaluate's embedding cache: ~/.cache/ragtrain/queries, or $XDG_CACHE_HOME/ragtrain/queries."""
    return default_cache_dir().parent / "queries"


def generate_outputs(passages: list[tuple[str, str]], generator, template: list[dict], cache: QueryCache,
                     counts: Counter) -> list[list[str]]:
    """Each (title, text) passage's raw completions: from the cache, or generated in batches (and cached)."""
    conversations = [render(template, title, text) for title, text in passages]
    keys = [cache.key(c) for c in conversations]
    missing = list(dict.fromkeys(k for k in keys if k not in cache.entries))
    counts["llm_prompts_cached"] += len(keys) - len(missing)
    counts["llm_prompts_generated"] += len(missing)
    by_key, usable = dict(zip(keys, conversations)), {}
    started = time.perf_counter()
    with tqdm(total=len(missing), desc="writing queries", unit="query", disable=None, smoothing=0.1) as bar:
        for start in range(0, len(missing), generator.batch_size):
            batch = missing[start : start + generator.batch_size]
            outputs = generator.generate([by_key[k] for k in batch])
            cache.add([(k, texts) for k, texts in zip(batch, outputs) if all(isinstance(t, str) for t in texts)])
            usable |= {k: [t for t in texts if isinstance(t, str)] for k, texts in zip(batch, outputs)}
            _count_unusable(outputs, counts, nothing_usable_yet=not any(usable.values()))
            bar.update(len(batch))
    if missing:  # the bar is hidden in a log file: the speed stays in the output and the manifest
        seconds = time.perf_counter() - started
        counts["llm_generation_ms"] += round(seconds * 1000)
        tell(f"wrote queries for {len(missing)} passages in {seconds:.0f} s ({len(missing) / seconds:.2f} passages/s)")
    return [cache.entries.get(k, usable.get(k, [])) for k in keys]


def _count_unusable(outputs: list[list], counts: Counter, nothing_usable_yet: bool) -> None:
    """Replies without text are counted (llm_unusable_replies) and left out of the cache, so a rerun asks again;
    a first batch of nothing but such replies is a server that does not speak chat completions: one line."""
    unusable = [t for texts in outputs for t in texts if not isinstance(t, str)]
    counts["llm_unusable_replies"] += len(unusable)
    if unusable and nothing_usable_yet:
        raise UserError(f"the generator gave no usable reply to any of the first {len(unusable)} prompts (e.g. "
                        f"{unusable[0].reason}); is --generator-url an OpenAI-compatible chat-completions server?")


def sample_passages(count: int, limit: int, seed: int) -> list[int]:
    """The passages queries are written for, in the order they are written: all, or the first `limit` of a seeded
    shuffle, so that a larger limit keeps every passage of a smaller one (and their cached queries)."""
    if limit <= 0 or limit >= count:
        return list(range(count))
    order = list(range(count))
    random.Random(seed).shuffle(order)
    return order[:limit]


# ----------------------------------------------------------------------------------------------- cleaning
def content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOP_WORDS and len(w) > 2}


def strip_formatting(raw: str) -> str:
    """The first non-empty line without numbering, list marks, 'Question:' labels, quotes or markdown."""
    line = next((line for line in raw.strip().splitlines() if line.strip()), "")
    line = PREFIX.sub("", line).strip(QUOTES)
    return " ".join(PREFIX.sub("", line).strip(QUOTES).split())


def drop_reason(query: str, passage: str, examples: list[str]) -> str | None:
    """Why a cleaned query must go (a counts key), or None to keep it."""
    words = query.split()
    if not words:
        return "empty"
    if len(words) < MIN_WORDS:
        return "too_short"
    if len(words) > MAX_WORDS:
        return "too_long"
    if META.search(query):
        return "meta"
    own = content_words(query)
    in_passage = own & content_words(passage)
    if not in_passage:
        return "generic"  # "What is the answer to this question?": nothing of the passage in it
    if any(len(own & content_words(e) - in_passage) >= 2 or query.lower() == e.lower() for e in examples):
        return "from_examples"
    run = longest_copied_run(re.findall(r"\w+", query.lower()), " " + " ".join(re.findall(r"\w+", passage.lower())) + " ")
    if run >= COPY_MIN_RUN and run >= COPY_SHARE * len(words):
        return "copied"
    return None


def longest_copied_run(query_words: list[str], passage: str) -> int:
    """The most consecutive query words found together in `passage` (words joined by single spaces, padded)."""
    best = 0
    for start in range(len(query_words)):
        length = best + 1  # only a longer run matters
        while start + length <= len(query_words) and f" {' '.join(query_words[start : start + length])} " in passage:
            best, length = length, length + 1
    return best


def clean_outputs(outputs: list[str], passage: str, examples: list[str], seen: set[str], counts: Counter) -> list[str]:
    """The usable queries among one passage's completions; `seen` (normalised queries kept so far) drops repeats."""
    kept = []
    for raw in outputs:
        query = strip_formatting(raw)
        reason = drop_reason(query, passage, examples)
        key = " ".join(re.findall(r"\w+", query.lower()))
        if reason is None and key in seen:
            reason = "repeated"
        if reason is not None:
            counts[f"llm_dropped_{reason}"] += 1
            continue
        seen.add(key)
        kept.append(query)
    return kept
