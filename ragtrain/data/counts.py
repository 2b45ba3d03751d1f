"""prepare-data's counts in words, in the order the data flows (files, documents, passages, splits, queries,
negatives, triples, evaluation set), each named for what it counts: the table prepare-data prints and the data table
of a model card. manifest.json keeps the counts under their short keys; this is how a person reads them.
"""

from __future__ import annotations

from rich.table import Table

SPLIT_WORDS = {"train": "training", "val": "validation", "test": "test", "dev": "dev"}
# (key, or key prefix ending in "_" followed by a split or reason; the label, {} the split's or reason's words)
WORDS = (
    ("files", "files found"),
    ("files_read", "files read"),
    ("files_skipped_empty", "files skipped: empty"),
    ("files_skipped_binary", "files skipped: binary"),
    ("files_not_utf8", "files not UTF-8 (bad bytes replaced)"),
    ("characters_replaced", "characters replaced (not UTF-8)"),
    ("documents", "documents"),
    ("documents_renamed_duplicate_id", "documents whose repeated id got a ~n suffix"),
    ("documents_", "documents in the {} split"),
    ("passages_split", "passages cut from the documents"),
    ("passages", "passages, duplicates removed"),
    ("pairs", "pairs read"),
    ("pair_queries", "distinct queries among the pairs"),
    ("pair_queries_", "queries in the {} split"),
    ("beir_queries_", "judged queries in qrels/{}"),
    ("queries_heading", "queries: a section heading finds its passage"),
    ("queries_title", "queries: a short document's title finds its passage"),
    ("queries_crop", "queries: a span of a passage finds the passage"),
    ("queries_cloze", "queries: a sentence finds the rest of its passage"),
    ("queries_llm", "queries a generator wrote"),
    ("llm_prompts_generated", "generator: passages prompted"),
    ("llm_prompts_cached", "generator: answers taken from the cache"),
    ("llm_generation_ms", "generator: milliseconds spent writing"),
    ("llm_queries_cleaned", "generated queries kept by the cleaning"),
    ("llm_dropped_round_trip", "generated queries dropped: their passage missed --filter-rank"),
    ("llm_dropped_", "generated queries dropped: {}"),
    ("negatives_skipped_false_negative", "candidates skipped as likely relevant (scored near the positive)"),
    ("negatives_skipped_same_document", "candidates skipped as from the query's own document"),
    ("given_negatives_dropped_", "given negatives dropped from {} triples: a text of another split"),
    ("triples_short_of_negatives", "triples short of --negatives hard negatives (see the warning)"),
    ("train_triples", "training triples (train.jsonl)"),
    ("val_triples", "validation triples (val.jsonl)"),
    ("teacher_scored_triples", "triples the teacher scored"),
    ("eval_corpus", "evaluation corpus: passages searched (eval/corpus.jsonl)"),
    ("eval_queries_", "evaluation queries, {} split"),
    ("corpus_duplicate_ids", "corpus rows dropped: a repeated id (the first kept)"),
    ("queries_duplicate_ids", "query rows dropped: a repeated id (the first kept)"),
    ("qrels_duplicate_judgements", "judgements dropped: a repeated query and document (the first kept)"),
    ("qrels_dropped_unknown_document", "judgements dropped: the document is not in the corpus"),
    ("qrels_dropped_unknown_query", "judgements dropped: the query is not in queries.jsonl"),
    ("qrels_dropped_query_without_text", "judgements dropped: the query has no text"),
    ("qrels_splits_dropped_no_relevant_judgement", "qrels splits dropped: no relevant judgement left"),
)


def count_words(key: str) -> tuple[tuple[int, int], str]:
    """(place in the table, label) of a count; a key no entry knows comes last, in its own words. Splits keep the
    order training, validation, test."""
    for place, (name, label) in enumerate(WORDS):
        if key == name:
            return (place, 0), label
    for place, (name, label) in enumerate(WORDS):
        if name.endswith("_") and key.startswith(name):
            rest = key.removeprefix(name).removesuffix("_other_split")
            order = list(SPLIT_WORDS).index(rest) if rest in SPLIT_WORDS else len(SPLIT_WORDS)
            return (place, order), label.format(SPLIT_WORDS.get(rest, rest.replace("_", " ")))
    return (len(WORDS), 0), key.replace("_", " ")


def counts_in_words(counts: dict[str, int]) -> list[tuple[str, int]]:
    """(label, count) of each count, in the order the data flows."""
    return [(label, value) for _, label, value in sorted((*count_words(key), value) for key, value in counts.items())]


def counts_table(title: str, counts: dict[str, int]) -> Table:
    """The counts as a rich table of labels and numbers, in the order the data flows."""
    table = Table(title=title)
    table.add_column("what")
    table.add_column("count", justify="right")
    for label, value in counts_in_words(counts):
        table.add_row(label, f"{value:,}")
    return table
