"""What a training step's embeddings look like, read without gradient: the design's "positive distance" and
"embedding std" readouts, logged every logged step beside the loss.

- cos_positive: mean cosine of each query with its positive (rises as the model learns the task).
- cos_hardest_negative: mean over queries of the cosine of the highest-scoring negative the loss saw (in-batch and
  hard negatives, candidates the mask leaves out excluded); the gap to cos_positive is the margin being learned.
- embedding_std: mean over dimensions of the per-dimension standard deviation of the normalised embeddings of the
  step's queries and documents; it falls towards 0 when embeddings collapse to one point (uniform on the sphere
  of D dimensions it is about 1/sqrt(D)).
- mean_pairwise_cos, the isotropy statistic: the mean cosine between two different embeddings of the step; 0 for
  directions spread evenly, 1 when all point the same way (anisotropy, common in pre-trained encoders).

Pure functions of tensors, cheap next to the forward pass: one (B, B + N) score matrix the loss computes anyway.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

DIAGNOSTICS = ("cos_positive", "cos_hardest_negative", "embedding_std", "mean_pairwise_cos")


@torch.no_grad()
def embedding_diagnostics(query_emb: torch.Tensor, doc_emb: torch.Tensor,
                          mask: torch.Tensor | None = None) -> dict[str, float]:
    """The four readouts of one step from raw embeddings: query_emb (B, D), doc_emb (B + N, D) with query i's
    positive at row i; mask (B, B + N) True where a candidate is left out of query i's softmax.

    A query with no negative left (one triple, no hard negatives, or all masked) does not count towards
    cos_hardest_negative; with none at all it is NaN.
    """
    q = F.normalize(query_emb.detach().float(), dim=-1)  # (B, D)
    d = F.normalize(doc_emb.detach().float(), dim=-1)  # (B + N, D)
    size = q.size(0)
    cosines = q @ d.T  # (B, B + N)
    excluded = torch.zeros_like(cosines, dtype=torch.bool) if mask is None else mask.to(cosines.device).clone()
    excluded[torch.arange(size), torch.arange(size)] = True  # a query's own positive is no negative
    hardest = cosines.masked_fill(excluded, -math.inf).max(dim=1).values  # (B,), -inf: no negative left
    has_negative = torch.isfinite(hardest)
    return {
        "cos_positive": cosines.diagonal().mean().item(),
        "cos_hardest_negative": hardest[has_negative].mean().item() if has_negative.any() else math.nan,
        "embedding_std": embedding_std(torch.cat([q, d])),
        "mean_pairwise_cos": mean_pairwise_cosine(torch.cat([q, d])),
    }


def embedding_std(unit: torch.Tensor) -> float:
    """unit (n, D), normalised rows -> the mean over the D dimensions of each dimension's (population) std."""
    return unit.std(dim=0, unbiased=False).mean().item()


def mean_pairwise_cosine(unit: torch.Tensor) -> float:
    """unit (n, D), normalised rows -> the mean of u_i . u_j over pairs i != j, without the (n, n) matrix:
    |sum u|^2 = n + sum over i != j of u_i . u_j, since each u_i . u_i is 1. NaN for fewer than two rows."""
    n = unit.size(0)
    if n < 2:
        return math.nan
    total = unit.sum(dim=0)  # (D,)
    return ((total @ total - n) / (n * (n - 1))).item()


def diagnostics_postfix(parts: dict[str, float]) -> dict[str, str]:
    """The readouts as the progress bar shows them: pos(itive) and neg(ative) cosine, std, iso(tropy)."""
    short = {"cos_positive": "pos", "cos_hardest_negative": "neg", "embedding_std": "std", "mean_pairwise_cos": "iso"}
    return {label: f"{parts[name]:.3f}" for name, label in short.items() if name in parts}
