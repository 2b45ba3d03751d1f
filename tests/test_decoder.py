"""Decoder LLM embedders (Qwen3-Embedding, e5-mistral style): causal attention, the end-of-sequence token appended
to every text and its last hidden state pooled, the same under left and right padding as each text alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModel, PreTrainedTokenizerFast

from ragtrain.model.encoding import encode_documents, pad
from ragtrain.model.loading import load_encoder
from ragtrain.model.runtime import Runtime
from ragtrain.model.saving import save_encoder
from ragtrain.training.loss import contrastive_loss
from tests.conftest import WORDS

TEXTS = ["the cat sat on the tree", "bread oven", "a planet in orbit around the sun far away", "python"]
SPECIALS = {"pad_token": "<pad>", "unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"}


def build(kind: str, directory: Path) -> Path:
    """A 2-layer random Qwen3 or Llama and a word-level tokenizer that, like theirs, appends no EOS (Llama: BOS first)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import LlamaConfig, Qwen3Config

    vocab = [*SPECIALS.values(), *WORDS]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    if kind == "llama":
        backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 2)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **SPECIALS)
    size = dict(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                intermediate_size=64, max_position_embeddings=128, pad_token_id=0, bos_token_id=2, eos_token_id=3)
    config = Qwen3Config(head_dim=16, **size) if kind == "qwen3" else LlamaConfig(**size)
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def by_hand(model_dir: Path, texts: list[str]) -> torch.Tensor:
    """Each text alone, unpadded, its EOS appended: the normalised last hidden state of that EOS. (n, 32)"""
    transformer = AutoModel.from_pretrained(model_dir).eval()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir)
    rows = []
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]
            rows.append(transformer(input_ids=torch.tensor([ids])).last_hidden_state[0, -1])
    return torch.nn.functional.normalize(torch.stack(rows), dim=-1)


def left_padded(sequences: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    longest = max(map(len, sequences))
    ids = torch.tensor([[pad_id] * (longest - len(s)) + s for s in sequences])
    mask = torch.tensor([[0] * (longest - len(s)) + [1] * len(s) for s in sequences])
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("kind", ["qwen3", "llama"])
def test_a_decoder_embeds_its_appended_eos_as_each_text_alone_under_either_padding(kind, tmp_path):
    model_dir = build(kind, tmp_path / kind)
    reference = by_hand(model_dir, TEXTS)
    encoder = load_encoder(str(model_dir))
    tokenizer = encoder.tokenizer
    encoder.eval()
    assert encoder.causal and (encoder.settings.pooling, encoder.settings.source("pooling")) == ("last", "default for a decoder")
    ids = tokenizer(TEXTS)["input_ids"]
    assert all(row[-1] == tokenizer.eos_token_id for row in ids)
    with torch.no_grad():
        right = encoder(**pad(ids, tokenizer.pad_token_id))  # (4, 32), one pass per length bucket on CPU
        left = encoder(**left_padded(ids, tokenizer.pad_token_id))  # (4, 32), one pass
    assert torch.allclose(right, reference, atol=1e-5)
    assert torch.allclose(left, reference, atol=1e-5)


@pytest.mark.parametrize("kind", ["qwen3", "llama"])
def test_a_decoder_trains_a_step_and_loads_in_sentence_transformers_the_same(kind, tmp_path):
    from sentence_transformers import SentenceTransformer

    encoder = load_encoder(str(build(kind, tmp_path / kind)))
    tokenizer = encoder.tokenizer
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in encoder.parameters()]
    batch = pad(tokenizer(TEXTS)["input_ids"], tokenizer.pad_token_id)
    emb = encoder.embed(**batch)  # (4, 32)
    loss, _ = contrastive_loss(emb[:2], emb[2:], temperature=0.05)
    loss.backward()
    optimizer.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, encoder.parameters()))
    save_encoder(encoder, tmp_path / "saved")
    encoder = load_encoder(str(tmp_path / "saved"))
    tokenizer = encoder.tokenizer
    assert tokenizer("cat")["input_ids"][-1] == tokenizer.eos_token_id  # the saved tokenizer appends it, once
    assert tokenizer("cat")["input_ids"][-2] != tokenizer.eos_token_id
    ours = encode_documents(encoder, TEXTS, Runtime(torch.device("cpu")), 4, kind)
    theirs = torch.as_tensor(SentenceTransformer(str(tmp_path / "saved"), device="cpu").encode(TEXTS, batch_size=4))
    assert torch.nn.functional.cosine_similarity(ours, theirs).min() >= 0.9999


def test_decoder_weights_load_in_bf16_when_asked(tmp_path):
    encoder = load_encoder(str(build("qwen3", tmp_path / "q")), dtype=torch.bfloat16)
    assert {p.dtype for p in encoder.transformer.parameters()} == {torch.bfloat16}
