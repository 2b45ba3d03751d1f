"""Matryoshka embeddings: which prefixes of an embedding train to work on their own, and cutting one to a prefix.

Training takes the contrastive loss at each dimension in --matryoshka-dims (loss.contrastive_loss), so a model
trained at 384,128,64 can serve a 64-dimension index; `evaluate --truncate-dim` and sentence-transformers'
truncate_dim keep the first N dimensions (renormalised for cosine).
"""

from __future__ import annotations

import numpy as np

from ragtrain.errors import UserError


def matryoshka_dims(dims: tuple[int, ...], size: int, model: str) -> tuple[int, ...]:
    """The dimensions to train, largest first, with the full `size` added when missing (the whole embedding must
    stay good too); () stays off. One above the embedding size is a UserError."""
    if not dims:
        return ()
    above = [d for d in dims if d > size]
    if above:
        raise UserError(f"--matryoshka-dims {','.join(map(str, above))} is above model {model}'s embedding size {size}; "
                        f"pass dimensions up to {size}")
    return tuple(sorted(set(dims) | {size}, reverse=True))


def truncate(emb: np.ndarray, dim: int, normalize: bool) -> np.ndarray:
    """(N, D) -> (N, dim): the first `dim` dimensions, renormalised to unit length when scoring by cosine."""
    cut = np.asarray(emb[:, :dim], dtype=np.float32)
    if not normalize:
        return cut
    norms = np.linalg.norm(cut, axis=1, keepdims=True)
    return cut / np.maximum(norms, 1e-12)
