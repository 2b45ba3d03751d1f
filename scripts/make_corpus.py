"""A synthetic corpus of N distinct passages for the large-corpus benchmarks, and an evaluation set over it whose
relevance judgements are known by construction. Made on demand, outside the repository, never committed.

Passages recombine sentences of the SciFact abstracts in ../shared/data (read at run time): each passage draws
sentences under --seed until it holds about --words words, and no two passages hold the same sentences in the
same order. An evaluation query joins the opening words of two sentences of one passage; the passages judged
relevant to it are exactly those that hold both sentences (almost always its own alone), found by a pass over
the corpus, so the qrels are true by construction rather than by a model's opinion.

    python scripts/make_corpus.py --passages 1000000 [--output DIR] [--queries 1000] [--seed 0]

DIR (default: $TMPDIR/ragtrain-corpora/<passages>-<seed>) receives
    docs.jsonl                 one document per passage ({"_id", "text"}), what `prepare-data DIR/docs.jsonl` reads
    beir/corpus.jsonl, beir/queries.jsonl, beir/qrels/test.tsv    the evaluation set, what `evaluate` reads
A folder already complete for the same options is reused as it is.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

from benchlib import REPO, SCIFACT, require

from ragtrain.data.documents import normalise, sentences_of

MIN_SENTENCE_WORDS, MAX_SENTENCE_WORDS = 6, 60  # shorter are fragments, longer would fill a passage alone
QUERY_WORDS_PER_SENTENCE = 7
DONE = "complete.json"  # written last: its options say what the folder holds


def sentence_pool(corpus: Path) -> list[str]:
    """Every distinct sentence (up to case and spacing) of the abstracts, of a usable length, in file order."""
    seen, pool = set(), []
    with corpus.open(encoding="utf-8") as handle:
        for line in handle:
            for sentence in sentences_of(json.loads(line)["text"]):
                key = normalise(sentence)
                if MIN_SENTENCE_WORDS <= len(sentence.split()) <= MAX_SENTENCE_WORDS and key not in seen:
                    seen.add(key)
                    pool.append(sentence)
    return pool


def passages(pool: list[str], count: int, words: int, rng: random.Random):
    """`count` distinct tuples of sentence indices, each about `words` words long."""
    lengths = [len(s.split()) for s in pool]
    seen: set[tuple[int, ...]] = set()
    while len(seen) < count:
        chosen, total = [], 0
        while total < words:
            index = rng.randrange(len(pool))
            if index not in chosen:
                chosen.append(index)
                total += lengths[index]
        key = tuple(chosen)
        if key not in seen:
            seen.add(key)
            yield key


def write_corpus(out: Path, pool: list[str], count: int, words: int, seed: int) -> list[tuple[int, ...]]:
    """docs.jsonl and beir/corpus.jsonl; returns every passage's sentence indices, in corpus order."""
    rng = random.Random(seed)
    (out / "beir").mkdir(parents=True, exist_ok=True)
    recipes = []
    with (out / "docs.jsonl").open("w", encoding="utf-8") as docs, \
            (out / "beir" / "corpus.jsonl").open("w", encoding="utf-8") as corpus:
        for n, sentences in enumerate(passages(pool, count, words, rng)):
            text = " ".join(pool[i] for i in sentences)
            docs.write(json.dumps({"_id": f"d{n}", "text": text}) + "\n")
            corpus.write(json.dumps({"_id": f"p{n}", "title": "", "text": text}) + "\n")
            recipes.append(sentences)
    return recipes


def write_queries(out: Path, pool: list[str], recipes: list[tuple[int, ...]], queries: int, seed: int) -> None:
    """queries.jsonl and qrels/test.tsv: a query joins the opening words of two sentences of its passage; every
    passage holding both sentences is relevant."""
    rng = random.Random(seed + 1)
    chosen = rng.sample(range(len(recipes)), min(queries, len(recipes)))
    pairs = [tuple(sorted(rng.sample(recipes[n], 2))) for n in chosen]
    holders: dict[int, set[int]] = {i: set() for pair in pairs for i in pair}
    for n, sentences in enumerate(recipes):
        for i in sentences:
            if i in holders:
                holders[i].add(n)
    with (out / "beir" / "queries.jsonl").open("w", encoding="utf-8") as handle:
        for q, (a, b) in enumerate(pairs):
            text = " ".join(pool[a].split()[:QUERY_WORDS_PER_SENTENCE] + pool[b].split()[:QUERY_WORDS_PER_SENTENCE])
            handle.write(json.dumps({"_id": f"q{q}", "text": text}) + "\n")
    (out / "beir" / "qrels").mkdir(exist_ok=True)
    with (out / "beir" / "qrels" / "test.tsv").open("w", encoding="utf-8") as handle:
        handle.write("query-id\tcorpus-id\tscore\n")
        for q, (a, b) in enumerate(pairs):
            handle.writelines(f"q{q}\tp{m}\t1\n" for m in sorted(holders[a] & holders[b]))


def make_corpus(passages_count: int, out: Path | None = None, queries: int = 1000, words: int = 120,
                seed: int = 0) -> Path:
    """The folder holding the corpus of these options, made unless it is there already."""
    out = out or Path(tempfile.gettempdir()) / "ragtrain-corpora" / f"{passages_count}-{seed}"
    options = {"passages": passages_count, "queries": queries, "words": words, "seed": seed}
    if (out / DONE).is_file() and json.loads((out / DONE).read_text()) == options:
        return out
    if out.resolve().is_relative_to(REPO):
        sys.exit(f"{out} is inside the repository; the corpus is written outside it (never committed)")
    require(SCIFACT / "corpus.jsonl", "../shared/data/scifact beside the repository")
    (out / DONE).unlink(missing_ok=True)
    pool = sentence_pool(SCIFACT / "corpus.jsonl")
    recipes = write_corpus(out, pool, passages_count, words, seed)
    write_queries(out, pool, recipes, queries, seed)
    (out / DONE).write_text(json.dumps(options))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, required=True)
    parser.add_argument("--output", type=Path)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--words", type=int, default=120, help="about this many words per passage")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(make_corpus(args.passages, args.output, args.queries, args.words, args.seed))


if __name__ == "__main__":
    main()
