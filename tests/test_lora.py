"""LoRA through peft: only the adapters train, the saved model is merged (or the adapter alone on request), both load
with the same embeddings, resume equals an uninterrupted run, and a model peft cannot wrap is one line."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from ragtrain.commands.train import train
from ragtrain.config.train import TrainConfig
from ragtrain.model.encoding import encode_documents
from ragtrain.model.loading import load_encoder
from ragtrain.model.lora import add_lora
from ragtrain.model.runtime import Runtime
from tests.conftest import train_interrupted, user_error, write_triples

pytest.importorskip("peft")
TEXTS = ["the cat sat on the tree", "bread dough and yeast", "a planet in orbit around the sun"]


def config(tmp_path, tiny_model, **options) -> TrainConfig:
    triples = tmp_path / "train.jsonl"
    if not triples.exists():
        write_triples(triples, count=24, negatives=1)
    base = dict(train_data=triples, model=str(tiny_model), output_dir=tmp_path / "run", batch_size=4, max_seq_length=32,
                learning_rate=1e-2, device="cpu", log_steps=1, lora_rank=4, lora_alpha=8.0)
    return TrainConfig(**(base | options))


def embeddings(model_dir) -> torch.Tensor:
    encoder = load_encoder(str(model_dir))
    return encode_documents(encoder, TEXTS, Runtime(torch.device("cpu")), 4, "t")


def test_only_the_adapters_train(tiny_model):
    encoder = load_encoder(str(tiny_model))
    total = sum(p.numel() for p in encoder.parameters())
    encoder.transformer = add_lora(encoder.transformer, rank=4, alpha=8.0, dropout=0.0, targets=None)
    trainable = {n: p.numel() for n, p in encoder.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    # peft's default for BERT: query and value of each of the 2 layers, A (4 x 32) and B (32 x 4) each
    assert sum(trainable.values()) == 2 * 2 * (4 * 32 + 32 * 4) and total > 10 * sum(trainable.values())


@pytest.mark.slow
def test_the_merged_and_the_adapter_saves_embed_alike_and_the_base_changed(tmp_path, tiny_model):
    from sentence_transformers import SentenceTransformer

    merged = train(config(tmp_path, tiny_model, output_dir=tmp_path / "merged"))
    adapter = train(config(tmp_path, tiny_model, output_dir=tmp_path / "adapter", lora_save="adapter"))
    assert (merged / "model.safetensors").is_file() and not (merged / "adapter_config.json").exists()
    assert (adapter / "adapter_config.json").is_file() and not (adapter / "model.safetensors").exists()
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_model)
    ours = embeddings(merged)
    assert torch.allclose(embeddings(adapter), ours, atol=1e-5)
    assert not torch.allclose(embeddings(tiny_model), ours, atol=1e-3)  # training moved it
    theirs = torch.as_tensor(SentenceTransformer(str(merged), device="cpu").encode(TEXTS))
    assert torch.nn.functional.cosine_similarity(ours, theirs).min() >= 0.9999


@pytest.mark.slow
def test_a_resumed_lora_run_ends_with_the_same_weights(tmp_path, tiny_model, monkeypatch):
    options = dict(epochs=2, save_steps=4)
    reference = train(config(tmp_path, tiny_model, output_dir=tmp_path / "straight", **options))
    # killed after the checkpoint at step 4, mid-way through epoch 1 (6 steps per epoch)
    train_interrupted(monkeypatch, config(tmp_path, tiny_model, **options), at_call=7)
    assert (tmp_path / "run" / "checkpoints" / "step-4" / "adapter" / "adapter_config.json").is_file()
    resumed = train(config(tmp_path, tiny_model, resume="latest", **options))
    expected, got = load_file(reference / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert max((expected[k] - got[k]).abs().max().item() for k in expected) <= 1e-6


def test_a_model_peft_cannot_wrap_is_one_line(tmp_path, triples_file, tiny_model):
    line = user_error(["train", "--train-data", str(triples_file), "--model", str(tiny_model), "-o", str(tmp_path / "r"),
                       "--device", "cpu", "--lora-rank", "4", "--lora-target-modules", "no_such_layer"])
    assert line.startswith("error: --lora-rank: peft cannot wrap this bert model") and "--lora-target-modules" in line
    assert not (tmp_path / "r" / "config.json").exists()


def test_a_rank_above_the_hidden_size_is_one_line(tmp_path, triples_file, tiny_model):
    """--lora-rank 4096 on a 32-wide model was accepted without a word: a full-rank 'adapter' bigger than the model."""
    line = user_error(["train", "--train-data", str(triples_file), "--model", str(tiny_model), "-o", str(tmp_path / "run"),
                       "--device", "cpu", "--lora-rank", "4096"])
    assert "--lora-rank 4096 is above the model's hidden size 32" in line and "pass at most 32" in line
    add_lora(load_encoder(str(tiny_model)).transformer, rank=32, alpha=8.0, dropout=0.0, targets=None)  # the limit itself
