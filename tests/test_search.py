"""Dense search: exact top k whatever the chunk sizes, ties by corpus order; embeddings equal to the reference's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ragtrain.commands.evaluate import evaluate
from ragtrain.model.encoding import encode_documents
from ragtrain.model.loading import load_encoder
from ragtrain.model.runtime import Runtime
from ragtrain.model.saving import save_encoder
from ragtrain.retrieval.search import dense_search, top_k
from tests.conftest import QUERIES, evaluate_config, quiet_console


def test_chunked_search_equals_full_search_exactly():
    gen = torch.Generator().manual_seed(0)
    corpus = torch.randn(301, 16, generator=gen)
    corpus[200] = corpus[7]  # an exact tie: the lower index must rank first whatever the chunks
    queries = torch.cat([torch.randn(37, 16, generator=gen), corpus[7:8]])
    full_scores = queries @ corpus.T
    expected = torch.sort(full_scores, dim=1, descending=True, stable=True).indices[:, :25].numpy()
    for query_chunk, corpus_chunk in [(1000, 1000), (5, 64), (7, 13), (1, 1)]:
        indices, scores = dense_search(queries, corpus, 25, query_chunk=query_chunk, corpus_chunk=corpus_chunk)
        np.testing.assert_array_equal(indices, expected)
        # the same ranking; scores agree to float32 rounding (matrix products of other shapes sum differently)
        np.testing.assert_allclose(scores, np.take_along_axis(full_scores.numpy(), expected, axis=1), rtol=1e-5, atol=1e-5)
    assert list(dense_search(queries, corpus, 25)[0][-1][:2]) == [7, 200]


def test_depth_larger_than_corpus_returns_the_whole_corpus():
    assert dense_search(torch.eye(3), torch.eye(3), 100)[0].shape == (3, 3)


def test_sentence_transformers_directory_matches_its_own_encode(beir, tmp_path, tiny_model):
    st = pytest.importorskip("sentence_transformers")
    encoder = load_encoder(str(tiny_model))
    model_dir = tmp_path / "st-model"
    save_encoder(encoder, model_dir)
    (model_dir / "ragtrain.json").unlink()  # only the sentence-transformers files describe the head now
    reference = st.SentenceTransformer(str(model_dir), device="cpu").encode(list(QUERIES.values()), convert_to_tensor=True)
    encoder = load_encoder(str(model_dir))
    ours = encode_documents(encoder, list(QUERIES.values()), Runtime(torch.device("cpu")), 2, "q")
    torch.testing.assert_close(ours, reference.cpu(), atol=1e-5, rtol=1e-4)
    results = evaluate(evaluate_config(beir, tmp_path, str(model_dir)), console=quiet_console())
    assert results["models"][str(model_dir)]["similarity"] == "cosine"


def test_top_k_breaks_ties_by_index_also_at_the_cut():
    indices, scores = top_k(np.array([[0.5, 0.9, 0.5, 0.9]]), 3)
    assert indices.tolist() == [[1, 3, 0]] and scores.tolist() == [[0.9, 0.9, 0.5]]
    rng = np.random.default_rng(0)
    many = rng.integers(0, 4, size=(50, 200)).astype(np.float32)  # four values: ties straddle every cut
    for depth in (1, 7, 60, 200, 300):
        indices, scores = top_k(many, depth)
        expected = np.argsort(-many, axis=1, kind="stable")[:, :depth]  # by score, then by index
        assert np.array_equal(indices, expected) and np.array_equal(scores, np.take_along_axis(many, expected, 1))
