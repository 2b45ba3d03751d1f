"""Contrastive losses as pure functions of embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(query_emb: torch.Tensor, doc_emb: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE over in-batch negatives plus hard negatives.

    query_emb: (B, D). doc_emb: (B + N, D), the B positives first (row i is query i's positive), then the
    batch's N hard negatives, which every query is scored against. Returns the mean cross-entropy.
    """
    scores = query_emb @ doc_emb.T / temperature  # (B, B + N)
    labels = torch.arange(query_emb.size(0), device=query_emb.device)  # (B,)
    return F.cross_entropy(scores.float(), labels)
