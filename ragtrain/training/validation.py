"""Validation during training: loss on held-out triples, Recall@10/nDCG@10 on a BEIR set, and best-model keeping."""

from __future__ import annotations

import math

import torch

from ragtrain.data.evaldata import EvalData
from ragtrain.data.triples import TokenizedTriples, collate, epoch_batches, false_negative_mask
from ragtrain.model.encoder import Encoder
from ragtrain.model.encoding import encode_documents, encode_queries
from ragtrain.model.runtime import Runtime
from ragtrain.retrieval.metrics import mean_metrics
from ragtrain.retrieval.search import dense_search
from ragtrain.training.loss import LossOptions, contrastive_loss

K = 10


@torch.no_grad()
def validation_loss(encoder: Encoder, data: TokenizedTriples, loss: LossOptions, batch_size: int, seed: int,
                    runtime: Runtime) -> float:
    """Mean contrastive loss per query (no regulariser) over fixed batches of the validation triples.

    Repeated passages are masked as in training. A batch of one triple (at most the last) is left out,
    as before: it has no in-batch negatives.
    """
    encoder.eval()
    total, queries_seen = 0.0, 0
    for batch in epoch_batches(data, batch_size, seed, epoch=0):
        if len(batch) < 2:
            continue
        queries, docs = ({k: v.to(runtime.device) for k, v in part.items()} for part in collate(data, batch, encoder.pad_id))
        with runtime.train_autocast():
            query_emb, doc_emb = encoder.embed(**queries), encoder.embed(**docs)
        value, _ = contrastive_loss(query_emb, doc_emb, loss.temperature, loss.normalize, loss.symmetric,
                                    mask=false_negative_mask(data, batch).to(runtime.device), dims=loss.matryoshka_dims)
        total, queries_seen = total + value.item() * len(batch), queries_seen + len(batch)
    encoder.train()
    return total / queries_seen if queries_seen else math.nan


@torch.no_grad()
def retrieval_metrics(encoder: Encoder, eval_set: EvalData, batch_size: int, runtime: Runtime) -> dict[str, float]:
    """Recall@10 and nDCG@10 of a search over the whole evaluation corpus, encoded in the runtime's encode precision."""
    corpus_emb = encode_documents(encoder, eval_set.corpus_texts, runtime, batch_size, "val corpus")
    query_emb = encode_queries(encoder, eval_set.query_texts, runtime, batch_size, "val queries")
    encoder.train()
    ranked, _ = dense_search(query_emb, corpus_emb, K)  # (queries, K) corpus indices
    rankings = {q: [eval_set.corpus_ids[i] for i in row] for q, row in zip(eval_set.query_ids, ranked)}
    metrics = mean_metrics(rankings, eval_set.qrels, (K,))
    return {f"recall@{K}": metrics[f"recall@{K}"], f"ndcg@{K}": metrics[f"ndcg@{K}"]}


def run_validation(encoder: Encoder, val_data: TokenizedTriples | None, eval_set: EvalData | None, loss: LossOptions,
                   batch_sizes: tuple[int, int], seed: int, runtime: Runtime) -> dict[str, float]:
    """The validation loss (batches of the first of `batch_sizes`) and the retrieval metrics (encoded in batches of
    the second), each where its data is given."""
    results: dict[str, float] = {}
    if val_data is not None:
        results["val_loss"] = validation_loss(encoder, val_data, loss, batch_sizes[0], seed, runtime)
    if eval_set is not None:
        results |= retrieval_metrics(encoder, eval_set, batch_sizes[1], runtime)
    return results


def is_better(metric: str, value: float, best: float | None) -> bool:
    """Lower is better for the loss, higher for retrieval metrics; a NaN never wins."""
    if math.isnan(value):
        return False
    if best is None:
        return True
    return value < best if metric == "val_loss" else value > best
