"""prepare-data's counts in words, in the order the data flows, and triples short of negatives as a warning that
says what to do."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

from rich.console import Console

from ragtrain.commands.prepare import short_of_negatives
from ragtrain.config.prepare import PrepareConfig
from ragtrain.data.counts import count_words, counts_table


def test_counts_are_named_for_what_they_count_splits_in_order_unknown_ones_last():
    counts = {"val_triples": 49, "documents_test": 10, "documents_train": 82, "negatives_skipped_false_negative": 8083,
              "files": 102, "documents_val": 10, "something_new": 3, "given_negatives_dropped_val_other_split": 2}
    console = Console(width=120, record=True, file=io.StringIO())
    console.print(counts_table("prepare-data -> out", counts))
    text = console.export_text()
    labels = [line.split("│")[1].strip() for line in text.splitlines() if line.startswith("│")]
    assert labels == ["files found", "documents in the training split", "documents in the validation split",
                      "documents in the test split", "candidates skipped as likely relevant (scored near the positive)",
                      "given negatives dropped from validation triples: a text of another split",
                      "validation triples (val.jsonl)", "something new"]
    assert "│ 8,083 │" in text
    assert count_words("eval_queries_test")[1] == "evaluation queries, test split"


def test_triples_short_of_negatives_are_a_warning_naming_the_options_to_change():
    config = PrepareConfig(inputs=(Path("docs"),), output_dir=Path("out"), negatives=4, negative_range=(10, 100))
    counts = Counter(triples_short_of_negatives=92, train_triples=517, val_triples=49)
    (warning,) = short_of_negatives(config, counts)
    assert warning.startswith("92 of 566 triples have fewer than --negatives 4 hard negatives")
    assert warning.endswith("widen --negative-range (e.g. 10-200), lower --negatives, or add documents")
    assert short_of_negatives(config, Counter(train_triples=517, val_triples=49)) == []
