"""Pooling on hand-made tensors, and a saved model loading three ways with the same embeddings."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from ragtrain.data import pad
from ragtrain.model import EncoderSpec, load_encoder, pool, resolve_model_path, save_encoder

TEXTS = ["the cat sat on the tree", "a river flows to the sea from the mountain", "python code", "moon"]


def test_pooling_modes_on_hand_made_states():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]],   # last token is padding
                           [[5.0, 6.0], [7.0, 8.0], [9.0, 10.0]]])      # (B=2, L=3, H=2)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert torch.equal(pool(hidden, mask, "mean"), torch.tensor([[2.0, 3.0], [7.0, 8.0]]))
    assert torch.equal(pool(hidden, mask, "cls"), torch.tensor([[1.0, 2.0], [5.0, 6.0]]))
    assert torch.equal(pool(hidden, mask, "last"), torch.tensor([[3.0, 4.0], [9.0, 10.0]]))


def embed_with_ragtrain(path, texts=TEXTS) -> torch.Tensor:
    encoder, tokenizer = load_encoder(str(path))
    encoder.eval()
    batch = pad(tokenizer(texts, truncation=True, max_length=64)["input_ids"], tokenizer.pad_token_id)
    with torch.no_grad():
        return encoder(**batch)


def trained_like(tiny_model, tmp_path, spec: EncoderSpec):
    """A model with a (random) head saved by ragtrain, as training would leave it."""
    torch.manual_seed(0)
    encoder, tokenizer = load_encoder(str(tiny_model), spec)
    save_encoder(encoder, tokenizer, tmp_path / "saved", max_seq_length=64)
    return tmp_path / "saved"


@pytest.mark.parametrize("spec", [EncoderSpec("mean", True, 8), EncoderSpec("cls", True, None),
                                  EncoderSpec("mean", False, None)], ids=["mean-head-norm", "cls-norm", "mean-raw"])
def test_saved_model_loads_three_ways_with_the_same_embeddings(tiny_model, tmp_path, spec):
    from sentence_transformers import SentenceTransformer

    saved = trained_like(tiny_model, tmp_path, spec)
    ours = embed_with_ragtrain(saved)
    assert ours.shape == (len(TEXTS), spec.output_dim or 32)
    assert torch.allclose(ours.norm(dim=1), torch.ones(len(TEXTS)), atol=1e-5) == spec.normalize
    theirs = torch.tensor(SentenceTransformer(str(saved), device="cpu").encode(TEXTS))
    assert torch.allclose(ours, theirs, atol=1e-5)
    # transformers alone gives the encoder: our pooling (and head) on its states gives our embeddings
    transformer, tokenizer = AutoModel.from_pretrained(saved), AutoTokenizer.from_pretrained(saved)
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        pooled = pool(transformer(**batch).last_hidden_state, batch["attention_mask"], spec.pooling)
    encoder, _ = load_encoder(str(saved))
    with torch.no_grad():
        emb = encoder.projection(pooled) if encoder.projection is not None else pooled
    emb = torch.nn.functional.normalize(emb, dim=-1) if spec.normalize else emb
    assert torch.allclose(emb, ours, atol=1e-5)
    assert (saved / "model.safetensors").is_file() and not list(saved.glob("*.bin"))


def test_a_new_head_is_added_and_a_saved_one_kept(tiny_model, tmp_path):
    saved = trained_like(tiny_model, tmp_path, EncoderSpec(output_dim=6))
    encoder, _ = load_encoder(str(saved))
    assert encoder.spec.output_dim == 6 and encoder.projection.out_features == 6
    kept, _ = load_encoder(str(saved), EncoderSpec())  # no --output-dim: the model's own head stays
    assert torch.equal(kept.projection.weight, encoder.projection.weight)


@pytest.mark.slow
@pytest.mark.parametrize("output_dim", [None, 128])
def test_trained_minilm_matches_sentence_transformers(tmp_path, output_dim):
    from sentence_transformers import SentenceTransformer

    from ragtrain.config import TrainConfig
    from ragtrain.train import train
    from tests.conftest import write_triples

    name = "sentence-transformers/all-MiniLM-L6-v2"
    if resolve_model_path(name) == name:
        pytest.skip("the bundled all-MiniLM-L6-v2 is not installed")
    final = train(TrainConfig(train_data=write_triples(tmp_path / "t.jsonl", count=4), model=name,
                              output_dir=tmp_path / "run", batch_size=4, max_seq_length=32, output_dim=output_dim,
                              learning_rate=1e-4, warmup_ratio=0.0, device="cpu"))
    texts = TEXTS + ["Bread dough rises when yeast eats sugar.", "A planet moves in an orbit around the sun."]
    ours = embed_with_ragtrain(final, texts)
    theirs = torch.tensor(SentenceTransformer(str(final), device="cpu").encode(texts))
    cosine = torch.nn.functional.cosine_similarity(ours, theirs)
    assert cosine.min().item() >= 0.9999
    assert ours.shape[1] == (output_dim or 384)
