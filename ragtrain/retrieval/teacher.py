"""Teacher scores for triples (prepare-data --teacher): each triple gets `scores`, the teacher's score of its
positive and of each negative, in order, which train --loss distill learns from.

hybrid: BM25 and a dense model fused as evaluate's hybrid row (hybrid.py): per query, z-scores over a corpus
of every passage the triples draw from (the split's passages in document mode, and every triple text), so a
score says how far a candidate stands out for that query. A cross-encoder (AutoModelForSequenceClassification)
reads query and candidate together: its logit (one label) or the log-probability of its last label.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from ragtrain.model.crossencoder import CrossEncoder, score_pairs
from ragtrain.model.runtime import Runtime
from ragtrain.retrieval.embedding import DOCUMENTS, QUERIES, Embedder
from ragtrain.retrieval.hybrid import QUERY_CHUNK, HybridScorer


def candidates_of(row: dict) -> list[str]:
    return [row["positive"], *row["negatives"]]


def add_teacher_scores(rows: list[dict], corpus_texts: list[str], teacher: Embedder | CrossEncoder, weight: float,
                       runtime: Runtime, counts: Counter) -> None:
    """Set each triple's "scores" (positive first, then its negatives) from the teacher, in place: the hybrid
    teacher's dense model (an Embedder, fused with BM25 at `weight`), or a cross-encoder."""
    if not rows:
        return
    if isinstance(teacher, Embedder):
        scores = hybrid_scores(rows, corpus_texts, teacher, weight)
    else:
        scores = cross_encoder_scores(rows, teacher, runtime)
    for row, row_scores in zip(rows, scores):
        row["scores"] = [round(float(s), 6) for s in row_scores]
    counts["teacher_scored_triples"] += len(rows)


def hybrid_scores(rows: list[dict], corpus_texts: list[str], embedder: Embedder, weight: float) -> list[list[float]]:
    """Each triple's candidates' fused BM25 + dense z-scores over the corpus (corpus_texts and every candidate),
    queries and passages embedded as evaluate's hybrid row embeds them (the model's prompts and length)."""
    texts = list(dict.fromkeys([*corpus_texts, *(t for row in rows for t in candidates_of(row))]))
    position = {text: n for n, text in enumerate(texts)}
    embedded = embedder.embed({"teacher: passages": (DOCUMENTS, texts),
                               "teacher: queries": (QUERIES, [r["query"] for r in rows])})
    query_emb = np.asarray(embedded.parts["teacher: queries"])  # (Q, D)
    scorer = HybridScorer(texts, embedded.parts["teacher: passages"])
    scores = []
    for start in range(0, len(rows), QUERY_CHUNK):
        chunk = rows[start : start + QUERY_CHUNK]
        fused = scorer.scores([r["query"] for r in chunk], query_emb[start : start + QUERY_CHUNK], weight)
        scores += [fused[n, [position[t] for t in candidates_of(row)]].tolist() for n, row in enumerate(chunk)]
    return scores


def cross_encoder_scores(rows: list[dict], cross: CrossEncoder, runtime: Runtime) -> list[list[float]]:
    """Each triple's candidates scored by a cross-encoder reading (query, candidate) pairs."""
    flat = score_pairs(cross, [(row["query"], text) for row in rows for text in candidates_of(row)], runtime)
    scores, start = [], 0
    for row in rows:
        count = len(candidates_of(row))
        scores.append(flat[start : start + count])
        start += count
    return scores
