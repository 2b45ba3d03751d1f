"""Encoders beyond BERT: each architecture, as a tiny random model with its own config and an offline tokenizer,
loads, takes a training step, saves, and embeds in sentence-transformers exactly as in ragtrain."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModel, PreTrainedTokenizerFast

from ragtrain.model.encoding import encode_documents
from ragtrain.model.loading import load_encoder
from ragtrain.model.runtime import Runtime
from ragtrain.model.saving import save_encoder
from ragtrain.training.loss import contrastive_loss
from tests.conftest import WORDS

TEXTS = ["the cat sat on the tree", "bread dough and yeast in the oven", "a planet in orbit", "python code cache",
         "fish swim in the river water near the mountain city"]
SIZE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


def fast_tokenizer(specials: dict[str, str], template: tuple[str, str]) -> PreTrainedTokenizerFast:
    """A word-level WordPiece tokenizer over the test vocabulary (no download), wrapping each text as the
    architecture does (`template`: the tokens before and after it)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = list(dict.fromkeys([*specials.values(), *WORDS, *"abcdefghijklmnopqrstuvwxyz"]))
    tokenizer = Tokenizer(models.WordPiece({w: i for i, w in enumerate(vocab)}, unk_token=specials["unk_token"]))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    first, last = template
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{first} $A {last}", pair=f"{first} $A {last} $B {last}",
        special_tokens=[(first, vocab.index(first)), (last, vocab.index(last))])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **specials)


BERT_SPECIALS = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]", "mask_token": "[MASK]"}
ROBERTA_SPECIALS = {"pad_token": "<pad>", "unk_token": "<unk>", "cls_token": "<s>", "sep_token": "</s>",
                    "bos_token": "<s>", "eos_token": "</s>", "mask_token": "<mask>"}


def _config(kind: str, vocab: int):
    from transformers import (
        BertConfig,
        DebertaV2Config,
        DistilBertConfig,
        ElectraConfig,
        ModernBertConfig,
        MPNetConfig,
        RobertaConfig,
        XLMRobertaConfig,
    )

    positions = dict(max_position_embeddings=130)
    if kind == "bert":
        return BertConfig(vocab_size=vocab, **SIZE, **positions), BERT_SPECIALS, ("[CLS]", "[SEP]")
    if kind == "distilbert":
        return (DistilBertConfig(vocab_size=vocab, dim=32, n_layers=2, n_heads=2, hidden_dim=64, **positions),
                BERT_SPECIALS, ("[CLS]", "[SEP]"))
    if kind == "electra":
        return ElectraConfig(vocab_size=vocab, embedding_size=16, **SIZE, **positions), BERT_SPECIALS, ("[CLS]", "[SEP]")
    if kind == "deberta-v2":
        return (DebertaV2Config(vocab_size=vocab, **SIZE, **positions, relative_attention=True, position_buckets=16,
                                pos_att_type=["p2c", "c2p"]), BERT_SPECIALS, ("[CLS]", "[SEP]"))
    if kind == "modernbert":
        ids = {k: list(BERT_SPECIALS.values()).index(v) for k, v in
               (("pad_token_id", "[PAD]"), ("cls_token_id", "[CLS]"), ("sep_token_id", "[SEP]"), ("bos_token_id", "[CLS]"),
                ("eos_token_id", "[SEP]"))}
        return (ModernBertConfig(vocab_size=vocab, **SIZE, max_position_embeddings=128, global_attn_every_n_layers=2,
                                 local_attention=16, **ids), BERT_SPECIALS, ("[CLS]", "[SEP]"))
    ids = dict(pad_token_id=0, bos_token_id=2, eos_token_id=3)  # ROBERTA_SPECIALS' order: <pad> <unk> <s> </s>
    config_class = {"roberta": RobertaConfig, "xlm-roberta": XLMRobertaConfig, "mpnet": MPNetConfig}[kind]
    return config_class(vocab_size=vocab, **SIZE, **positions, **ids), ROBERTA_SPECIALS, ("<s>", "</s>")


def build(kind: str, directory: Path) -> Path:
    torch.manual_seed(0)
    config, specials, template = _config(kind, vocab=0)
    tokenizer = fast_tokenizer(specials, template)
    config, _, _ = _config(kind, vocab=len(tokenizer))
    AutoModel.from_config(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.mark.parametrize("kind", ["bert", "distilbert", "roberta", "xlm-roberta", "mpnet", "electra", "deberta-v2",
                                  "modernbert"])
def test_an_encoder_trains_saves_and_embeds_as_sentence_transformers_does(kind, tmp_path):
    from sentence_transformers import SentenceTransformer

    encoder = load_encoder(str(build(kind, tmp_path / "base")))
    tokenizer = encoder.tokenizer
    runtime = Runtime(torch.device("cpu"))
    before = [p.detach().clone() for p in encoder.parameters()]
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=1e-3)
    emb = encoder.embed(batch["input_ids"], batch["attention_mask"])  # (5, 32)
    loss, _ = contrastive_loss(emb[:2], emb[2:], temperature=0.05)
    loss.backward()
    optimizer.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, encoder.parameters()))  # the step changed the weights
    save_encoder(encoder, tmp_path / "saved")
    encoder = load_encoder(str(tmp_path / "saved"))
    tokenizer = encoder.tokenizer
    ours = encode_documents(encoder, TEXTS, runtime, 2, kind)
    theirs = torch.as_tensor(SentenceTransformer(str(tmp_path / "saved"), device="cpu").encode(TEXTS, batch_size=2))
    assert torch.nn.functional.cosine_similarity(ours, theirs).min() >= 0.9999
