#!/usr/bin/env bash
# ragtrain report on real data, small enough for 2 CPU cores: 160 SciFact train triples, two runs that differ only
# in the learning rate (8e-5, 2e-5), evaluated on a slice of SciFact dev (its 160 queries, their judged abstracts
# and 400 others), drawn into one page. Needs ../shared/data/scifact and `pip install 'ragtrain[report,tensorboard]'`.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${REPORT_DEMO_DIR:-checkpoints/report_demo}"
SCIFACT="${SCIFACT:-../shared/data/scifact}"
PY="${PYTHON:-python}"

ragtrain prepare-data --beir "$SCIFACT" -o "$OUT/data" --negatives 1 --overwrite
head -160 "$OUT/data/train.jsonl" > "$OUT/train160.jsonl"
head -48 "$OUT/data/val.jsonl" > "$OUT/val48.jsonl"
"$PY" - "$OUT" <<'PYTHON'
import json, random, sys
from pathlib import Path
out = Path(sys.argv[1]); src, dst = out / "data" / "eval", out / "eval-slice"
(dst / "qrels").mkdir(parents=True, exist_ok=True)
lines = (src / "qrels" / "dev.tsv").read_text().splitlines()
judged, queries = {l.split("\t")[1] for l in lines[1:]}, {l.split("\t")[0] for l in lines[1:]}
corpus = [json.loads(l) for l in (src / "corpus.jsonl").read_text().splitlines()]
others = [d for d in corpus if d["_id"] not in judged]
random.Random(0).shuffle(others)
keep = [d for d in corpus if d["_id"] in judged] + others[:400]
(dst / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in keep))
rows = [json.loads(l) for l in (src / "queries.jsonl").read_text().splitlines()]
(dst / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in rows if q["_id"] in queries))
(dst / "qrels" / "dev.tsv").write_text("\n".join(lines) + "\n")
PYTHON
for lr in 8e-5 2e-5; do
  ragtrain train --train-data "$OUT/train160.jsonl" --val-data "$OUT/val48.jsonl" -o "$OUT/small-$lr" --overwrite \
      --epochs 1 --learning-rate $lr --max-seq-length 128 --batch-size 16 --eval-steps 2 --log-steps 1 \
      --threads 1 --report-to tensorboard
done
ragtrain evaluate bm25 sentence-transformers/all-MiniLM-L6-v2 "$OUT/small-8e-5" "$OUT/small-2e-5" \
    --eval-data "$OUT/eval-slice" --split dev --max-seq-length 128 --precision fp32 \
    --output "$OUT/results-slice.json" --update-card
ragtrain report "$OUT/small-8e-5" "$OUT/small-2e-5" --eval "$OUT/results-slice.json" -o "$OUT/report/scifact.html" \
    --title "SciFact, 160 train triples: learning rate 8e-5 against 2e-5"
