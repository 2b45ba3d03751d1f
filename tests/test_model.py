"""Pooling on hand-made tensors, length buckets (hand-computed, brute force, same embeddings and gradients as one
pass), and a saved model loading three ways with the same embeddings."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoModel, AutoTokenizer

from ragtrain.model import encoder as model_module
from ragtrain.model.encoder import enable_gradient_checkpointing, length_buckets, padding_buckets, pool
from ragtrain.model.encoding import pad
from ragtrain.model.loading import load_encoder, resolve_model_path
from ragtrain.model.saving import save_encoder
from ragtrain.model.settings import TextOptions
from ragtrain.training.loss import info_nce
from tests.conftest import gradients

TEXTS = ["the cat sat on the tree", "a river flows to the sea from the mountain", "python code", "moon"]


def test_pooling_modes_on_hand_made_states():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]],   # last token is padding
                           [[5.0, 6.0], [7.0, 8.0], [9.0, 10.0]]])      # (B=2, L=3, H=2)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert torch.equal(pool(hidden, mask, "mean"), torch.tensor([[2.0, 3.0], [7.0, 8.0]]))
    assert torch.equal(pool(hidden, mask, "cls"), torch.tensor([[1.0, 2.0], [5.0, 6.0]]))
    assert torch.equal(pool(hidden, mask, "last"), torch.tensor([[3.0, 4.0], [9.0, 10.0]]))
    assert torch.equal(pool(hidden, mask, "max"), torch.tensor([[3.0, 4.0], [9.0, 10.0]]))
    # sums (4, 6) and (21, 24) over 2 and 3 real tokens
    assert torch.allclose(pool(hidden, mask, "mean_sqrt_len"), torch.tensor([[4.0, 6.0], [21.0, 24.0]]) /
                          torch.tensor([[2.0], [3.0]]).sqrt())
    # weights 1, 2 and 1, 2, 3: (1*1 + 2*3) / 3, (1*2 + 2*4) / 3; (5 + 14 + 27) / 6, (6 + 16 + 30) / 6
    assert torch.allclose(pool(hidden, mask, "weightedmean"), torch.tensor([[7 / 3, 10 / 3], [46 / 6, 52 / 6]]))
    left = torch.tensor([[[100.0, 100.0], [1.0, 2.0], [3.0, 4.0]]])  # left padding: weights count from the first real token
    assert torch.allclose(pool(left, torch.tensor([[0, 1, 1]]), "weightedmean"), torch.tensor([[7 / 3, 10 / 3]]))


def test_length_buckets_on_a_hand_computed_case():
    # sorted lengths 5 6 7 | 30 31 | 90 100 at 50 per pass: 3*7 + 2*31 + 2*100 + 3*50 = 433, the minimum
    # (one pass: 7*100 + 50 = 750; 5..31 together: 5*31 + 2*100 + 100 = 455; 90 and 100 apart: 473)
    assert length_buckets([5, 100, 7, 90, 30, 31, 6], 50) == [(7, [0, 2, 6]), (31, [4, 5]), (100, [1, 3])]
    assert length_buckets([5, 100, 7, 90, 30, 31, 6], 1000) == [(100, list(range(7)))]
    assert length_buckets([9, 9, 9], 0) == [(9, [0, 1, 2])]


def padded_cost(passes, pass_cost):
    return sum(width * len(rows) + pass_cost for width, rows in passes)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=7), st.integers(0, 60))
def test_length_buckets_cover_every_row_once_at_the_least_cost(lengths, pass_cost):
    passes = length_buckets(lengths, pass_cost)
    assert sorted(row for _, rows in passes for row in rows) == list(range(len(lengths)))
    assert all(lengths[row] <= width for width, rows in passes for row in rows)
    # brute force: every split of the sorted rows into consecutive runs
    ordered = sorted(lengths)
    best = min(sum(max(ordered[a:b]) * (b - a) + pass_cost for a, b in zip((0, *cuts), (*cuts, len(ordered))))
               for k in range(len(ordered)) for cuts in itertools.combinations(range(1, len(ordered)), k))
    assert padded_cost(passes, pass_cost) == best


def test_padding_buckets_split_right_padded_cpu_batches_only(monkeypatch):
    right = (torch.arange(100) < torch.tensor([[100], [1], [2]])).long()  # (3, 100): rows of 100, 1 and 2 tokens
    # one pass: 3 * 100 + 32 = 332 tokens' worth; two: 2 * 2 + 32 + 100 + 32 = 168
    assert [(w, r.tolist()) for w, r in padding_buckets(right)] == [(2, [1, 2]), (100, [0])]
    left = right.flip(1)  # left padding cannot be cut at a width
    assert [(w, r.tolist()) for w, r in padding_buckets(left)] == [(100, [0, 1, 2])]
    empty_row = torch.cat([right, torch.zeros(1, 100, dtype=torch.long)])  # a row with no tokens still gets width 1
    assert [(w, r.tolist()) for w, r in padding_buckets(empty_row)] == [(2, [1, 2, 3]), (100, [0])]
    monkeypatch.setattr(model_module, "PASS_COST_TOKENS", {"cuda": 32})  # a device without a measured cost
    assert [(w, r.tolist()) for w, r in padding_buckets(right)] == [(100, [0, 1, 2])]


@pytest.mark.parametrize("pooling", ["mean", "cls", "last"])
def test_bucketed_embeddings_and_gradients_equal_one_pass(tiny_model, monkeypatch, pooling):
    encoder = load_encoder(str(tiny_model), TextOptions(pooling=pooling, normalize=True, output_dim=8))
    tokenizer = encoder.tokenizer
    encoder.eval()  # no dropout: both runs see the same function
    texts = TEXTS + ["a much longer text about the cat and the river and the sea and the moon " * 3, "sea"]
    batch = pad(tokenizer(texts, truncation=True, max_length=64)["input_ids"], tokenizer.pad_token_id)
    assert len(padding_buckets(batch["attention_mask"])) > 1

    def embed_and_grads():
        encoder.zero_grad()
        emb = encoder(**batch)  # (6, 8)
        (emb * torch.arange(1.0, 9.0)).sum().backward()  # a loss that tells rows and dimensions apart
        return emb.detach(), [p.grad.clone() for p in encoder.parameters() if p.grad is not None]

    bucketed, bucketed_grads = embed_and_grads()
    monkeypatch.setattr(model_module, "PASS_COST_TOKENS", {})  # one pass over the padded batch
    single, single_grads = embed_and_grads()
    assert torch.allclose(bucketed, single, atol=1e-6)
    assert len(bucketed_grads) == len(single_grads) > 0
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(bucketed_grads, single_grads))


def embed_with_ragtrain(path, texts=TEXTS) -> torch.Tensor:
    encoder = load_encoder(str(path))
    tokenizer = encoder.tokenizer
    encoder.eval()
    batch = pad(tokenizer(texts, truncation=True, max_length=64)["input_ids"], tokenizer.pad_token_id)
    with torch.no_grad():
        return encoder(**batch)


def trained_like(tiny_model, tmp_path, spec: TextOptions):
    """A model with a (random) head saved by ragtrain, as training would leave it."""
    torch.manual_seed(0)
    encoder = load_encoder(str(tiny_model), spec)
    save_encoder(encoder, tmp_path / "saved")
    return tmp_path / "saved"


@pytest.mark.parametrize("spec", [TextOptions(pooling="mean", normalize=True, output_dim=8), TextOptions(pooling="cls", normalize=True, output_dim=None),
                                  TextOptions(pooling="mean", normalize=False, output_dim=None)], ids=["mean-head-norm", "cls-norm", "mean-raw"])
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
    encoder = load_encoder(str(saved))
    with torch.no_grad():
        emb = encoder.projection(pooled) if encoder.projection is not None else pooled
    emb = torch.nn.functional.normalize(emb, dim=-1) if spec.normalize else emb
    assert torch.allclose(emb, ours, atol=1e-5)
    assert (saved / "model.safetensors").is_file() and not list(saved.glob("*.bin"))


def test_a_new_head_is_added_and_a_saved_one_kept(tiny_model, tmp_path):
    saved = trained_like(tiny_model, tmp_path, TextOptions(output_dim=6))
    encoder = load_encoder(str(saved))
    assert encoder.output_dim == 6 and encoder.projection.out_features == 6
    kept = load_encoder(str(saved), TextOptions())  # no --output-dim: the model's own head stays
    assert torch.equal(kept.projection.weight, encoder.projection.weight)


@pytest.mark.slow
@pytest.mark.parametrize("output_dim", [None, 128])
def test_trained_minilm_matches_sentence_transformers(tmp_path, output_dim):
    from sentence_transformers import SentenceTransformer

    from ragtrain.commands.train import train
    from ragtrain.config.train import TrainConfig
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



def test_a_broken_head_config_is_one_line(tiny_model, tmp_path):
    from ragtrain.errors import UserError

    saved = trained_like(tiny_model, tmp_path, TextOptions(output_dim=6))
    (saved / "ragtrain.json").write_text('{"pooling": "mean"')
    with pytest.raises(UserError, match="ragtrain.json"):
        load_encoder(str(saved))
    (saved / "ragtrain.json").write_text('{"pooling": "mean", "normalize": true, "output_dim": 6}')
    (saved / "2_Dense" / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(UserError, match="2_Dense"):
        load_encoder(str(saved))


def tiny_seq2seq(directory, tiny_model, config) -> "Path":
    """A tiny encoder-decoder saved like any Hugging Face model, with the tiny BERT's WordPiece tokenizer."""
    from transformers import AutoModel as Auto

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    torch.manual_seed(0)
    Auto.from_config(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_a_t5_directory_embeds_with_its_encoder(tiny_model, tmp_path):
    from sentence_transformers import SentenceTransformer
    from transformers import T5Config, T5EncoderModel

    config = T5Config(vocab_size=len(AutoTokenizer.from_pretrained(tiny_model)), d_model=16, d_kv=8, d_ff=32,
                      num_layers=2, num_heads=2, decoder_start_token_id=0)
    t5 = tiny_seq2seq(tmp_path / "t5", tiny_model, config)
    encoder = load_encoder(str(t5))
    tokenizer = encoder.tokenizer
    assert isinstance(encoder.transformer, T5EncoderModel)
    ours = embed_with_ragtrain(t5)
    # the same as T5's encoder states, mean-pooled by hand
    reference = T5EncoderModel.from_pretrained(t5)
    batch = pad(tokenizer(TEXTS, truncation=True, max_length=64)["input_ids"], tokenizer.pad_token_id)
    with torch.no_grad():
        states = reference(**batch).last_hidden_state  # (4, L, 16)
    expected = torch.nn.functional.normalize(pool(states, batch["attention_mask"], "mean"), dim=-1)
    assert ours.shape == (len(TEXTS), 16) and torch.allclose(ours, expected, atol=1e-5)
    save_encoder(encoder, tmp_path / "saved")  # saved and read back: the same
    assert torch.allclose(embed_with_ragtrain(tmp_path / "saved"), ours, atol=1e-6)
    theirs = torch.tensor(SentenceTransformer(str(tmp_path / "saved"), device="cpu").encode(TEXTS))
    assert torch.allclose(theirs, ours, atol=1e-5)


def test_an_encoder_decoder_without_an_encoder_class_is_one_line(tiny_model, tmp_path):
    from transformers import BartConfig

    from ragtrain.errors import UserError

    config = BartConfig(vocab_size=len(AutoTokenizer.from_pretrained(tiny_model)), d_model=16, encoder_layers=1,
                        decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                        decoder_ffn_dim=32, max_position_embeddings=64)
    bart = tiny_seq2seq(tmp_path / "bart", tiny_model, config)
    with pytest.raises(UserError, match=r"encoder-decoder \(bart\)"):
        load_encoder(str(bart))


def test_gradient_checkpointing_keeps_the_gradient(tiny_model):
    encoder = load_encoder(str(tiny_model), TextOptions())
    tokenizer = encoder.tokenizer
    queries, docs = (pad(tokenizer(texts)["input_ids"], tokenizer.pad_token_id) for texts in (TEXTS[:2], TEXTS[2:]))

    def loss_fn(query_emb, doc_emb):
        return info_nce(query_emb, doc_emb, temperature=0.05)

    encoder.train()  # Hugging Face checkpoints only in training mode; dropout masks are replayed too
    torch.manual_seed(3)
    loss_fn(encoder(**queries), encoder(**docs)).backward()
    expected = gradients(encoder)
    encoder.zero_grad(set_to_none=True)
    enable_gradient_checkpointing(encoder)
    assert any(getattr(m, "gradient_checkpointing", False) for m in encoder.modules())
    torch.manual_seed(3)
    loss_fn(encoder(**queries), encoder(**docs)).backward()
    got = gradients(encoder)
    assert got.keys() == expected.keys() and len(got) > 0
    for name, grad in got.items():
        torch.testing.assert_close(grad, expected[name], atol=1e-5, rtol=0, msg=name)
