"""A cross-encoder: a sequence-classification model that reads a query and a passage together and scores the pair
(prepare-data --teacher CROSS_ENCODER). Its length follows the same rule as an Encoder's: the model's own files,
else 256 tokens, capped at what the model reads. A model without a classification head in its files is refused:
loaded anyway, transformers would give it a fresh random head and every score would be noise."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from ragtrain.errors import UserError
from ragtrain.model.loading import length_limit, model_files_dir, resolve_model_path
from ragtrain.model.modelfiles import first_line, require_classification_head
from ragtrain.model.runtime import Runtime
from ragtrain.model.settings import DEFAULT_MAX_LENGTH
from ragtrain.model.textspec import read_spec

PAIR_BATCH_SIZE = 32  # query-passage pairs per forward pass


@dataclass(frozen=True)
class CrossEncoder:
    model: nn.Module
    tokenizer: object
    max_length: int


def load_cross_encoder(name: str, runtime: Runtime) -> CrossEncoder:
    """The cross-encoder `name` (a directory or a Hugging Face name) on the runtime's device, in eval mode."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = resolve_model_path(name)
    require_classification_head(name, model_files_dir(path))
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSequenceClassification.from_pretrained(path).to(runtime.device).eval()
    except (OSError, ValueError) as exc:
        raise UserError(f"--teacher {name} could not be loaded as a cross-encoder ({first_line(exc)}); pass 'hybrid' "
                        "or a sequence-classification model directory or name") from None
    own = read_spec(model_files_dir(path)).max_seq_length
    return CrossEncoder(model, tokenizer, min(own or DEFAULT_MAX_LENGTH, length_limit(model, tokenizer)))


@torch.inference_mode()
def score_pairs(cross: CrossEncoder, pairs: list[tuple[str, str]], runtime: Runtime) -> list[float]:
    """Each (query, passage) pair's score: the logit of a one-label head, else the log-probability of the last
    label (the "relevant" class of a two-label model)."""
    flat: list[float] = []
    for start in tqdm(range(0, len(pairs), PAIR_BATCH_SIZE), desc="teacher: cross-encoder", unit="batch", disable=None):
        batch = pairs[start : start + PAIR_BATCH_SIZE]
        encoded = cross.tokenizer([q for q, _ in batch], [t for _, t in batch], truncation=True,
                                  max_length=cross.max_length, padding=True, return_tensors="pt").to(runtime.device)
        logits = cross.model(**encoded).logits.float()  # (batch, labels)
        score = logits[:, 0] if logits.size(1) == 1 else torch.log_softmax(logits, dim=-1)[:, -1]  # (batch,)
        flat += score.cpu().tolist()
    return flat
