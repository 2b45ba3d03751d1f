"""A model's own files decide how it embeds (pooling, Dense layers, normalisation, length, lower-casing, similarity,
prompts), flags override them, and what ragtrain saves sentence-transformers reads the same way."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ragtrain.errors import UserError
from ragtrain.model.encoding import encode_documents, encode_queries
from ragtrain.model.loading import load_encoder
from ragtrain.model.runtime import Runtime
from ragtrain.model.settings import TextOptions
from ragtrain.model.textspec import read_spec
from tests.conftest import fake_hub_snapshot, user_error

TEXTS = ["The Cat sat on the TREE", "bread dough and yeast", "A planet in orbit around the sun, far away", "python"]
CPU = Runtime(torch.device("cpu"))


def st_model(directory: Path, tiny_model: Path, pooling: str = "cls", prompts: dict | None = None,
             similarity: str | None = None, normalize: bool = True) -> Path:
    """A sentence-transformers model saved by sentence-transformers itself: the tiny BERT lower-cased at 64 tokens,
    `pooling`, two Dense layers with Tanh (32 -> 16 -> 8), Normalize, and the given prompts and similarity."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Dense, Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    torch.manual_seed(0)
    modules = [Transformer(str(tiny_model), max_seq_length=64, do_lower_case=True), Pooling(32, pooling),
               Dense(32, 16, activation_function=torch.nn.Tanh()), Dense(16, 8, activation_function=torch.nn.Tanh())]
    model = SentenceTransformer(modules=modules + ([Normalize()] if normalize else []), device="cpu",
                                prompts=prompts or {}, similarity_fn_name=similarity)
    model.save(str(directory))
    return directory


def ours(model_dir: str, texts: list[str], side: str = "documents", **options) -> torch.Tensor:
    """Our embeddings of `texts` as queries or as documents (each side with its prompt), `options` the flags."""
    encoder = load_encoder(model_dir, TextOptions(**options))
    encode = encode_queries if side == "queries" else encode_documents
    return encode(encoder, texts, CPU, 4, "t")


def cosines(a, b) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(torch.as_tensor(a).float(), torch.as_tensor(b).float(), dim=1)


def test_a_sentence_transformers_model_embeds_as_its_files_say(tmp_path, tiny_model):
    from sentence_transformers import SentenceTransformer

    saved = st_model(tmp_path / "st", tiny_model, prompts={"query": "query: ", "document": "passage: "})
    encoder = load_encoder(str(saved))
    spec = encoder.settings
    assert (spec.pooling, spec.normalize, spec.max_length) == ("cls", True, 64)
    assert (spec.query_prompt, spec.document_prompt) == ("query: ", "passage: ")
    assert spec.source("pooling") == "1_Pooling/config.json" and spec.source("max_seq_length") == "tokenizer_config.json"
    assert encoder.output_size == 8  # both Dense layers, Tanh and all
    reference = SentenceTransformer(str(saved), device="cpu")
    queries = ours(str(saved), TEXTS, "queries")
    docs = ours(str(saved), TEXTS, "documents")
    assert cosines(queries, reference.encode_query(TEXTS)).min() >= 0.9999
    assert cosines(docs, reference.encode_document(TEXTS)).min() >= 0.9999
    assert not torch.allclose(queries, docs)  # the prompts made a difference


@pytest.mark.parametrize("pooling", ["cls", "mean", "max", "mean_sqrt_len_tokens", "weightedmean", "lasttoken"])
def test_every_pooling_mode_embeds_as_sentence_transformers_computes_it(tmp_path, tiny_model, pooling):
    """Each mode sentence-transformers' Pooling offers, read from its files, gives its embeddings, compared before
    normalisation (the model has none; ragtrain would add sentence-transformers' cosine), on texts of several lengths
    in one batch; the Dense layers' Tanh after the pooling makes a wrong scale a wrong direction too."""
    from sentence_transformers import SentenceTransformer

    saved = st_model(tmp_path / "st", tiny_model, pooling=pooling, normalize=False)
    reference = SentenceTransformer(str(saved), device="cpu").encode(TEXTS, convert_to_tensor=True, batch_size=4)
    assert torch.allclose(ours(str(saved), TEXTS, normalize=False), reference, atol=1e-5)


def test_flags_override_the_files_and_say_so(tmp_path, tiny_model):
    saved = st_model(tmp_path / "st", tiny_model)
    encoder = load_encoder(str(saved), TextOptions(pooling="mean", max_length=32))
    assert (encoder.settings.pooling, encoder.settings.max_length) == ("mean", 32)
    assert encoder.settings.source("pooling") == "--pooling"


def test_a_plain_transformers_directory_keeps_the_defaults(tiny_model):
    spec = read_spec(tiny_model)
    assert (spec.pooling, spec.normalize, spec.max_seq_length, spec.query_prompt, spec.sources) == ("mean", True, None, "", ())


def test_a_hub_name_reads_the_files_of_its_cached_snapshot(tmp_path, tiny_model, monkeypatch):
    import huggingface_hub.constants

    saved = st_model(tmp_path / "st", tiny_model, pooling="max")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    fake_hub_snapshot(tmp_path / "hub", "org/st-model", "c" * 40, saved)
    encoder = load_encoder("org/st-model")
    assert (encoder.settings.pooling, encoder.output_size) == ("max", 8)


def test_a_different_prompt_flag_is_refused_and_the_same_one_accepted(tmp_path, tiny_model):
    saved = st_model(tmp_path / "st", tiny_model, prompts={"query": "query: "})
    with pytest.raises(UserError, match="--query-prompt 'search: ' differs from the prompt model .* defines"):
        load_encoder(str(saved), TextOptions(query_prompt="search: "))
    encoder = load_encoder(str(saved), TextOptions(query_prompt="query: ", document_prompt="passage: "))
    assert (encoder.settings.query_prompt, encoder.settings.document_prompt) == ("query: ", "passage: ")


@pytest.mark.parametrize("change, message", [
    (lambda d: _edit(d / "1_Pooling" / "config.json", pooling_mode=["cls", "mean"]), "names the pooling cls \\+ mean"),
    (lambda d: _edit(d / "1_Pooling" / "config.json", include_prompt=False), "include_prompt false"),
    (lambda d: _edit(d / "config_sentence_transformers.json", similarity_fn_name="euclidean"), "similarity 'euclidean'"),
    (lambda d: (d / "modules.json").write_text(json.dumps(json.loads((d / "modules.json").read_text()) + [
        {"idx": 9, "name": "9", "path": "9_LayerNorm", "type": "sentence_transformers.models.LayerNorm"}])), "LayerNorm"),
], ids=["two-poolings", "prompt-excluded", "euclidean", "layer-norm"])
def test_what_ragtrain_does_not_compute_is_one_line(tmp_path, tiny_model, beir, change, message):
    saved = st_model(tmp_path / "st", tiny_model)
    change(saved)
    line = user_error(["evaluate", str(saved), "--eval-data", str(beir), "--device", "cpu", "--no-cache"])
    assert pytest.importorskip("re").search(message, line), line


def _edit(path: Path, **values) -> None:
    path.write_text(json.dumps(json.loads(path.read_text()) | values))


def test_a_dot_product_model_is_not_normalised(tmp_path, tiny_model):
    saved = st_model(tmp_path / "st", tiny_model, similarity="dot", normalize=False)
    encoder = load_encoder(str(saved))
    assert (encoder.settings.normalize, encoder.settings.similarity) == (False, "dot")
    assert encoder.settings.source("normalize") == "config_sentence_transformers.json similarity dot"


def test_training_tokenises_queries_and_passages_with_their_prompts(tiny_model):
    from ragtrain.data.triples import Triple, tokenize_triples

    encoder = load_encoder(str(tiny_model), TextOptions(max_length=64, query_prompt="query: ", document_prompt="passage: "))
    tokenizer = encoder.tokenizer
    data = tokenize_triples([Triple("cat tree", "the cat sat", ("bread",))], encoder)
    assert data.queries[0] == tokenizer("query: cat tree")["input_ids"]
    assert data.positives[0] == tokenizer("passage: the cat sat")["input_ids"]
    assert data.negatives[0][0] == tokenizer("passage: bread")["input_ids"]


def test_dtype_bf16_without_native_bf16_is_one_line(tmp_path, triples_file, tiny_model):
    from ragtrain.model.runtime import native_bf16

    if native_bf16(torch.device("cpu")):
        pytest.skip("this CPU computes bf16 natively")
    line = user_error(["train", "--train-data", str(triples_file), "--model", str(tiny_model), "-o",
                       str(tmp_path / "run"), "--device", "cpu", "--dtype", "bf16"])
    assert "--dtype bf16" in line and "no native bf16" in line
    assert not (tmp_path / "run" / "config.json").exists()


def test_weights_load_in_the_dtype_asked(tiny_model):
    encoder = load_encoder(str(tiny_model), dtype=torch.bfloat16)
    assert {p.dtype for p in encoder.parameters()} == {torch.bfloat16}


def test_the_cut_embedding_is_renormalised_for_cosine_only():
    from ragtrain.model.matryoshka import truncate

    emb = np.array([[3.0, 4.0, 12.0], [1.0, 0.0, 0.0]], dtype=np.float32)
    assert np.allclose(truncate(emb, 2, normalize=True), [[0.6, 0.8], [1.0, 0.0]])
    assert np.allclose(truncate(emb, 2, normalize=False), [[3.0, 4.0], [1.0, 0.0]])


def test_the_bundled_model_is_read_from_its_older_files_and_described_in_one_line():
    from ragtrain.model.loading import resolve_model_path
    from ragtrain.model.settings import describe

    spec = read_spec(Path(resolve_model_path("sentence-transformers/all-MiniLM-L6-v2")))
    assert (spec.pooling, spec.normalize, spec.max_seq_length) == ("mean", True, 256)
    settings = load_encoder("sentence-transformers/all-MiniLM-L6-v2").settings
    assert describe(settings, "m") == ("model m: pooling mean (1_Pooling/config.json), cosine (modules.json Normalize), "
                                        "max length 256 (sentence_bert_config.json), query prompt none (default), "
                                        "document prompt none (default)")


def test_the_dense_miner_embeds_queries_and_passages_with_their_prompts(tiny_model):
    from ragtrain.retrieval.cache import EmbeddingCache
    from ragtrain.retrieval.embedding import Embedder
    from ragtrain.retrieval.negatives import dense_search_with_positives

    passages, queries = TEXTS, ["cat tree", "sun orbit"]
    prompts = {"query_prompt": "query: ", "document_prompt": "passage: "}
    embedder = Embedder(load_encoder(str(tiny_model), TextOptions(**prompts)), str(tiny_model), CPU, EmbeddingCache(None))
    ranking = dense_search_with_positives(embedder, passages, queries, [(0,), (2,)], 4)
    query_emb = ours(str(tiny_model), queries, "queries", **prompts)
    doc_emb = ours(str(tiny_model), passages, "documents", **prompts)
    expected = query_emb @ doc_emb.T  # (2, 4)
    assert np.allclose(ranking.scores, np.sort(expected.numpy(), axis=1)[:, ::-1], atol=1e-5)
    assert np.allclose(ranking.positive_scores, [expected[0, 0], expected[1, 2]], atol=1e-5)


def test_the_hybrid_miner_ranks_by_the_fused_scores_of_bm25_and_the_model(tiny_model):
    """--miner hybrid: each query's list and its positive's score are BM25's and the model's z-scores fused at the
    weight; weight 0 lists passages as the dense miner does."""
    from ragtrain.retrieval.bm25 import build_bm25
    from ragtrain.retrieval.cache import EmbeddingCache
    from ragtrain.retrieval.embedding import Embedder
    from ragtrain.retrieval.hybrid import bm25_matrix, fuse
    from ragtrain.retrieval.negatives import _joined, dense_search_with_positives, hybrid_rankings

    passages, queries, positives = TEXTS, ["cat tree", "sun orbit planet"], [(0,), (2,)]
    embedder = Embedder(load_encoder(str(tiny_model)), str(tiny_model), CPU, EmbeddingCache(None))
    ranking = _joined(hybrid_rankings(embedder, passages, queries, positives, 4, 0.5), 4)
    dense = (ours(str(tiny_model), queries, "queries") @ ours(str(tiny_model), passages).T).numpy()  # (2, 4)
    fused = fuse(bm25_matrix(build_bm25(passages), queries, len(passages)), dense, 0.5)  # (2, 4)
    assert (ranking.indices == np.argsort(-fused, axis=1, kind="stable")).all()
    assert np.allclose(ranking.scores, -np.sort(-fused, axis=1), atol=1e-5)
    assert np.allclose(ranking.positive_scores, [fused[0, 0], fused[1, 2]], atol=1e-5)
    assert (_joined(hybrid_rankings(embedder, passages, queries, positives, 4, 0.0), 4).indices
            == dense_search_with_positives(embedder, passages, queries, positives, 4).indices).all()
