"""Teacher scores for triples (prepare-data --teacher): each triple gets `scores`, the teacher's score of its
positive and of each negative, in order, which train --loss distill learns from.

hybrid: BM25 and a dense model fused as evaluate's hybrid row (hybrid.py): per query, z-scores over a corpus
of every passage the triples draw from (the split's passages in document mode, and every triple text), so a
score says how far a candidate stands out for that query. A cross-encoder (AutoModelForSequenceClassification)
reads query and candidate together: its logit (one label) or the log-probability of its last label.
"""

from __future__ import annotations

from collections import Counter

import torch
from tqdm import tqdm

from ragtrain.errors import UserError
from ragtrain.model.encoder import load_encoder, resolve_model_path, usable_max_length
from ragtrain.model.modelfiles import first_line
from ragtrain.model.runtime import Runtime
from ragtrain.retrieval.hybrid import QUERY_CHUNK, HybridScorer
from ragtrain.retrieval.search import embed_texts

HYBRID = "hybrid"
BATCH_SIZE = 32  # texts (or query-candidate pairs) per forward pass
MAX_LENGTH = 256  # tokens, as train's and evaluate's default


def candidates_of(row: dict) -> list[str]:
    return [row["positive"], *row["negatives"]]


def add_teacher_scores(rows: list[dict], corpus_texts: list[str], teacher: str, model: str, weight: float,
                       runtime: Runtime, counts: Counter) -> None:
    """Set each triple's "scores" (positive first, then its negatives) from the teacher, in place."""
    if not rows:
        return
    if teacher == HYBRID:
        scores = hybrid_scores(rows, corpus_texts, model, weight, runtime)
    else:
        scores = cross_encoder_scores(rows, teacher, runtime)
    for row, row_scores in zip(rows, scores):
        row["scores"] = [round(float(s), 6) for s in row_scores]
    counts["teacher_scored_triples"] += len(rows)


def hybrid_scores(rows: list[dict], corpus_texts: list[str], model: str, weight: float,
                  runtime: Runtime) -> list[list[float]]:
    """Each triple's candidates' fused BM25 + dense z-scores over the corpus (corpus_texts and every candidate)."""
    texts = list(dict.fromkeys([*corpus_texts, *(t for row in rows for t in candidates_of(row))]))
    position = {text: n for n, text in enumerate(texts)}
    encoder, tokenizer = load_encoder(model)
    encoder.to(runtime.device)
    length = usable_max_length(encoder, tokenizer, MAX_LENGTH)
    corpus_emb = embed_texts(encoder, tokenizer, texts, BATCH_SIZE, length, runtime, "teacher: passages")  # (C, D)
    query_emb = embed_texts(encoder, tokenizer, [r["query"] for r in rows], BATCH_SIZE, length, runtime,
                            "teacher: queries")  # (Q, D)
    if encoder.spec.normalize:
        corpus_emb, query_emb = (torch.nn.functional.normalize(e, dim=-1) for e in (corpus_emb, query_emb))
    scorer = HybridScorer(texts, corpus_emb.numpy())
    scores = []
    for start in range(0, len(rows), QUERY_CHUNK):
        chunk = rows[start : start + QUERY_CHUNK]
        fused = scorer.rows([r["query"] for r in chunk], query_emb[start : start + QUERY_CHUNK].numpy(), weight)
        scores += [fused[n, [position[t] for t in candidates_of(row)]].tolist() for n, row in enumerate(chunk)]
    return scores


@torch.inference_mode()
def cross_encoder_scores(rows: list[dict], model: str, runtime: Runtime) -> list[list[float]]:
    """Each triple's candidates scored by a cross-encoder reading (query, candidate) pairs."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = resolve_model_path(model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        scorer = AutoModelForSequenceClassification.from_pretrained(path).to(runtime.device).eval()
    except (OSError, ValueError) as exc:
        raise UserError(f"--teacher {model} could not be loaded as a cross-encoder ({first_line(exc)}); pass 'hybrid' "
                        "or a sequence-classification model directory or name") from None
    pairs = [(row["query"], text) for row in rows for text in candidates_of(row)]
    flat: list[float] = []
    for start in tqdm(range(0, len(pairs), BATCH_SIZE), desc="teacher: cross-encoder", unit="batch", disable=None):
        batch = pairs[start : start + BATCH_SIZE]
        encoded = tokenizer([q for q, _ in batch], [t for _, t in batch], truncation=True, max_length=MAX_LENGTH,
                            padding=True, return_tensors="pt").to(runtime.device)
        logits = scorer(**encoded).logits.float()  # (batch, labels)
        score = logits[:, 0] if logits.size(1) == 1 else torch.log_softmax(logits, dim=-1)[:, -1]  # (batch,)
        flat += score.cpu().tolist()
    scores, start = [], 0
    for row in rows:
        count = len(candidates_of(row))
        scores.append(flat[start : start + count])
        start += count
    return scores
