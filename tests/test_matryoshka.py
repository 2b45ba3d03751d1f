"""Matryoshka training and truncated evaluation; and what a trained model carries into sentence-transformers: its
prompts, its similarity (dot product for --no-normalize) and its Matryoshka dimensions."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from ragtrain.commands.evaluate import evaluate
from ragtrain.commands.train import train
from ragtrain.config.train import TrainConfig
from ragtrain.errors import UserError
from ragtrain.model.encoding import encode_queries
from ragtrain.model.loading import load_encoder
from ragtrain.model.matryoshka import matryoshka_dims
from ragtrain.model.runtime import Runtime
from ragtrain.training.loss import contrastive_loss
from tests.conftest import DOCS, QUERIES, evaluate_config, quiet_console, user_error


def test_the_loss_is_the_mean_of_each_prefix_loss_computed_by_hand():
    query = torch.tensor([[1.0, 0.0, 3.0], [-0.5, 2.0, -1.0]])  # (2, 3)
    docs = torch.tensor([[2.0, 0.0, 0.0], [-1.0, 1.0, 1.0]])  # (2, 3): query i's positive is row i

    def by_hand(size: int) -> float:
        def unit(v):
            return [x / math.sqrt(sum(y * y for y in v)) for x in v]

        q = [unit(r[:size]) for r in query.tolist()]
        d = [unit(r[:size]) for r in docs.tolist()]
        total = 0.0
        for i in range(2):
            scores = [sum(a * b for a, b in zip(q[i], d[j])) / 0.5 for j in range(2)]
            total += -(scores[i] - math.log(sum(math.exp(s) for s in scores)))
        return total / 2

    loss, parts = contrastive_loss(query, docs, temperature=0.5, dims=(3, 1))
    assert loss.item() == pytest.approx((by_hand(3) + by_hand(1)) / 2, abs=1e-6)
    assert parts["loss_dim3"] == pytest.approx(by_hand(3), abs=1e-6)
    assert parts["loss_dim1"] == pytest.approx(by_hand(1), abs=1e-6)
    whole, _ = contrastive_loss(query, docs, temperature=0.5)
    assert whole.item() == pytest.approx(by_hand(3), abs=1e-6)  # no dims: the whole embedding alone, as before


def test_the_full_dimension_is_added_and_one_above_it_refused():
    assert matryoshka_dims((16, 8), 32, "m") == (32, 16, 8)
    assert matryoshka_dims((), 32, "m") == ()
    with pytest.raises(UserError, match="--matryoshka-dims 64 is above model m's embedding size 32"):
        matryoshka_dims((64, 8), 32, "m")


def test_a_dimension_above_the_embedding_is_one_line_before_training(tmp_path, triples_file, tiny_model):
    line = user_error(["train", "--train-data", str(triples_file), "--model", str(tiny_model), "-o",
                       str(tmp_path / "run"), "--device", "cpu", "--matryoshka-dims", "64,16"])
    assert "--matryoshka-dims 64 is above" in line
    assert not (tmp_path / "run" / "final").exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model):
    """A short run with prompts, --no-normalize and Matryoshka dimensions 16, 8 (32 added)."""
    from tests.conftest import write_triples

    tmp = tmp_path_factory.mktemp("mrl")
    config = TrainConfig(train_data=write_triples(tmp / "train.jsonl"), model=str(tiny_model), output_dir=tmp / "run",
                         batch_size=8, device="cpu", normalize=False, matryoshka_dims=(16, 8),
                         query_prompt="query: ", document_prompt="passage: ", learning_rate=1e-3)
    return train(config)


@pytest.mark.slow
def test_a_trained_model_carries_its_prompts_similarity_and_dimensions(trained):
    from sentence_transformers import SentenceTransformer

    saved = json.loads((trained / "config_sentence_transformers.json").read_text())
    assert saved["prompts"] == {"query": "query: ", "document": "passage: "}
    assert (saved["similarity_fn_name"], saved["matryoshka_dims"]) == ("dot", [32, 16, 8])
    assert json.loads((trained / "ragtrain.json").read_text())["matryoshka_dims"] == [32, 16, 8]
    encoder = load_encoder(str(trained))  # no flag: the model's own prompts
    assert (encoder.settings.query_prompt, encoder.settings.document_prompt, encoder.settings.normalize) == ("query: ", "passage: ", False)
    texts = list(QUERIES.values())
    ours = encode_queries(encoder, texts, Runtime(torch.device("cpu")), 4, "q")
    st = SentenceTransformer(str(trained), device="cpu")
    assert st.similarity_fn_name == "dot"
    theirs = torch.as_tensor(st.encode_query(texts))
    assert torch.nn.functional.cosine_similarity(ours, theirs).min() >= 0.9999
    assert torch.allclose(ours, theirs, atol=1e-4)  # not normalised by either
    cut = SentenceTransformer(str(trained), device="cpu", truncate_dim=8)
    assert torch.allclose(torch.as_tensor(cut.encode_query(texts)), ours[:, :8], atol=1e-4)


@pytest.mark.slow
def test_evaluate_ranks_as_sentence_transformers_does_whole_and_cut(trained, beir, tmp_path):
    from sentence_transformers import SentenceTransformer

    for dim in (None, 8):
        run_file = tmp_path / f"run{dim}.trec"
        evaluate(evaluate_config(beir, tmp_path, str(trained), precision="fp32", truncate_dim=dim, run_file=run_file),
                 console=quiet_console())
        ranked = {}
        for line in run_file.read_text().splitlines():
            query, _, doc, rank, *_ = line.split()
            ranked.setdefault(query, []).append(doc)
        st = SentenceTransformer(str(trained), device="cpu", truncate_dim=dim)
        scores = st.similarity(st.encode_query(list(QUERIES.values())), st.encode_document(list(DOCS.values())))  # dot
        assert len(ranked) == 3  # q4 has no relevant document, so evaluate leaves it out
        for row, query in zip(np.asarray(scores), QUERIES):
            if query in ranked:
                assert ranked[query] == [list(DOCS)[i] for i in np.argsort(-row, kind="stable")], (dim, query)


def test_truncate_dim_above_the_embedding_is_one_line(beir, tiny_model):
    line = user_error(["evaluate", str(tiny_model), "--eval-data", str(beir), "--device", "cpu", "--no-cache",
                       "--truncate-dim", "64"])
    assert "--truncate-dim 64 is above model" in line and "embedding size 32" in line


def test_resuming_with_the_same_flags_warns_of_nothing(tmp_path, triples_file, tiny_model, monkeypatch, capsys):
    """The checkpoint records the flags as given (Matryoshka dimensions, prompts, an unset pooling), not what the model
    resolved them to, so the same flags on --resume match it: no "differs from the checkpoint" line."""
    from tests.conftest import train_interrupted

    options = dict(train_data=triples_file, model=str(tiny_model), output_dir=tmp_path / "run", batch_size=8, epochs=2,
                   max_seq_length=32, device="cpu", matryoshka_dims=(16, 8), query_prompt="query: ",
                   learning_rate=1e-3, save_steps=1)
    train_interrupted(monkeypatch, TrainConfig(**options), at_call=3)
    capsys.readouterr()
    train(TrainConfig(**options, resume="latest"))
    err = capsys.readouterr().err
    assert "resuming from" in err and "differs from the checkpoint" not in err
