"""Texts to token ids and to embeddings, the one way for every command: queries with the model's query prompt,
passages with its document prompt, cut at its max length, lower-cased where it says so (its tokenizer does that),
all read from the Encoder's settings. sentence-transformers' encode_query / encode_document are the model.
"""

from __future__ import annotations

import numpy as np
import torch

from ragtrain.messages import Progress
from ragtrain.model.encoder import Encoder
from ragtrain.model.runtime import Runtime

ENCODE_BATCH_SIZE = 64  # texts per forward pass when a command does not say
ENCODE_CHUNK = 8192  # texts tokenised at a time: a corpus's token ids are never all held as Python lists


def with_prompt(texts: list[str], prompt: str) -> list[str]:
    """Each text with the prompt in front, as sentence-transformers prepends it (no separator added)."""
    return [prompt + text for text in texts] if prompt else list(texts)


def tokenize_queries(encoder: Encoder, texts: list[str]) -> list[list[int]]:
    """Token ids (no padding) of queries as the model reads them: its query prompt first, cut at its length."""
    return _token_ids(encoder, with_prompt(texts, encoder.settings.query_prompt))


def tokenize_documents(encoder: Encoder, texts: list[str]) -> list[list[int]]:
    """Token ids (no padding) of passages as the model reads them: its document prompt first, cut at its length."""
    return _token_ids(encoder, with_prompt(texts, encoder.settings.document_prompt))


def _token_ids(encoder: Encoder, texts: list[str]) -> list[list[int]]:
    return encoder.tokenizer(texts, truncation=True, max_length=encoder.settings.max_length, padding=False)["input_ids"]


def encode_queries(encoder: Encoder, texts: list[str], runtime: Runtime, batch_size: int = ENCODE_BATCH_SIZE,
                   desc: str = "queries", out: np.ndarray | None = None) -> torch.Tensor:
    """(len(texts), dim) embeddings of queries on the CPU (normalised where the model scores by cosine): float32, or
    written into `out` (any float dtype, e.g. a memory-mapped cache entry) as they are made and returned as its view."""
    return _encode(encoder, texts, encoder.settings.query_prompt, runtime, batch_size, desc, out)


def encode_documents(encoder: Encoder, texts: list[str], runtime: Runtime, batch_size: int = ENCODE_BATCH_SIZE,
                     desc: str = "passages", out: np.ndarray | None = None) -> torch.Tensor:
    """(len(texts), dim) embeddings of passages on the CPU (normalised where the model scores by cosine): float32, or
    written into `out` (any float dtype, e.g. a memory-mapped cache entry) as they are made and returned as its view."""
    return _encode(encoder, texts, encoder.settings.document_prompt, runtime, batch_size, desc, out)


@torch.inference_mode()
def _encode(encoder: Encoder, texts: list[str], prompt: str, runtime: Runtime, batch_size: int, desc: str,
            out: np.ndarray | None) -> torch.Tensor:
    """Embeddings in the order of `texts`, ENCODE_CHUNK texts tokenised at a time. Within a chunk texts are encoded
    longest first (a too-long batch fails at once, not at the end), each batch padded to its own longest text, so
    little compute goes to padding. The runtime's encode precision bf16/fp16 runs the transformer under autocast
    (matrix products in half precision, normalisation and softmax in fp32). The encoder is left in eval mode."""
    encoder.eval()
    out = np.empty((len(texts), encoder.output_size), dtype=np.float32) if out is None else out
    with Progress(len(texts), desc, "texts") as progress:
        for start in range(0, len(texts), ENCODE_CHUNK):
            token_ids = _token_ids(encoder, with_prompt(texts[start : start + ENCODE_CHUNK], prompt))
            order = sorted(range(len(token_ids)), key=lambda i: -len(token_ids[i]))  # stable: equal lengths in order
            for first in range(0, len(order), batch_size):
                index = order[first : first + batch_size]
                batch = {k: v.to(runtime.device) for k, v in pad([token_ids[i] for i in index], encoder.pad_id).items()}
                with runtime.encode_autocast():
                    emb = encoder(**batch).float().cpu()  # (batch, dim)
                out[start + np.array(index)] = emb.numpy()
                progress.update(len(index))
    return torch.from_numpy(out)


def pad(sequences: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad to the longest sequence: input_ids and attention_mask, (n, longest)."""
    longest = max(len(s) for s in sequences)
    input_ids = torch.tensor([s + [pad_id] * (longest - len(s)) for s in sequences], dtype=torch.long)
    attention_mask = torch.tensor([[1] * len(s) + [0] * (longest - len(s)) for s in sequences], dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention_mask}
