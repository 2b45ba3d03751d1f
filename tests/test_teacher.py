"""Teacher scores: the hybrid teacher against fusion computed by hand from the same embeddings and BM25 scores,
a tiny random cross-encoder against its own logits, and prepare-data --teacher writing them into the triples."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from conftest import jsonl_rows, prepare_config, user_error

from ragtrain.commands.prepare import prepare
from ragtrain.model.crossencoder import load_cross_encoder
from ragtrain.model.encoding import encode_documents, encode_queries
from ragtrain.model.loading import load_encoder
from ragtrain.model.runtime import Runtime
from ragtrain.retrieval.bm25 import build_bm25
from ragtrain.retrieval.cache import EmbeddingCache
from ragtrain.retrieval.embedding import Embedder
from ragtrain.retrieval.hybrid import bm25_matrix, zscores
from ragtrain.retrieval.teacher import add_teacher_scores

CORPUS = ["the cat sat on the tree", "bread dough and yeast in the oven", "a planet in orbit around the sun",
          "fish swim in the river water"]
ROWS = [{"query": "cat tree", "positive": CORPUS[0], "negatives": [CORPUS[1], "a dog in the city"]},
        {"query": "planet orbit", "positive": CORPUS[2], "negatives": [CORPUS[3]]}]
CPU = Runtime(torch.device("cpu"))


def test_hybrid_teacher_equals_fusion_by_hand(tiny_model):
    rows = [dict(r) for r in ROWS]
    counts = Counter()
    encoder = load_encoder(str(tiny_model))
    add_teacher_scores(rows, CORPUS, Embedder(encoder, str(tiny_model), CPU, EmbeddingCache(None)), 0.3, CPU, counts)
    texts = CORPUS + ["a dog in the city"]  # the corpus and every candidate
    corpus = torch.nn.functional.normalize(encode_documents(encoder, texts, CPU, 8, "c"), dim=-1).numpy()
    queries = torch.nn.functional.normalize(encode_queries(encoder, ["cat tree", "planet orbit"], CPU, 8, "q"), dim=-1).numpy()
    bm25 = bm25_matrix(build_bm25(texts), ["cat tree", "planet orbit"], len(texts))
    fused = 0.3 * zscores(bm25) + 0.7 * zscores(queries @ corpus.T)
    assert rows[0]["scores"] == pytest.approx(fused[0, [0, 1, 4]].tolist(), abs=1e-5)
    assert rows[1]["scores"] == pytest.approx(fused[1, [2, 3]].tolist(), abs=1e-5)
    assert counts["teacher_scored_triples"] == 2


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory, tiny_model):
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    directory = tmp_path_factory.mktemp("cross-encoder")
    torch.manual_seed(1)
    config = BertConfig.from_pretrained(tiny_model, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(directory)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(directory)
    return directory


def test_cross_encoder_teacher_scores_are_its_logits(tiny_cross_encoder):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    rows = [dict(r) for r in ROWS]
    add_teacher_scores(rows, CORPUS, load_cross_encoder(str(tiny_cross_encoder), CPU), 0.2, CPU, Counter())
    model = AutoModelForSequenceClassification.from_pretrained(tiny_cross_encoder).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_cross_encoder)
    for row in rows:
        for text, score in zip([row["positive"], *row["negatives"]], row["scores"]):
            with torch.no_grad():
                logit = model(**tokenizer(row["query"], text, return_tensors="pt")).logits[0, 0].item()
            assert score == pytest.approx(logit, abs=1e-4)
    assert len(rows[0]["scores"]) == 3 and len(rows[1]["scores"]) == 2


def test_prepare_data_writes_scores_for_every_triple(docs_dir, tmp_path, tiny_model):
    counts = prepare(prepare_config([docs_dir], tmp_path / "out", teacher="hybrid", model=str(tiny_model),
                                    negatives=2)).counts
    for name in ("train.jsonl", "val.jsonl"):
        for row in jsonl_rows(tmp_path / "out" / name):
            assert len(row["scores"]) == 1 + len(row["negatives"])
    assert counts["teacher_scored_triples"] == counts["train_triples"] + counts["val_triples"]


def test_a_teacher_that_is_no_cross_encoder_is_one_line(docs_dir, tmp_path):
    line = user_error(["prepare-data", str(docs_dir), "-o", str(tmp_path / "out"), "--teacher", "./no/such/teacher"])
    assert "--teacher ./no/such/teacher not found" in line  # before any passage is read
    assert not (tmp_path / "out").exists()


def test_a_bi_encoder_given_as_teacher_is_refused_before_any_work(docs_dir, tmp_path, tiny_model):
    """A saved embedding model (BertModel, no classification head) loaded as a cross-encoder got a freshly
    initialised head, and every teacher score was random."""
    from ragtrain.model.saving import save_encoder

    bi_encoder = tmp_path / "bi-encoder"
    save_encoder(load_encoder(str(tiny_model)), bi_encoder)
    for teacher in (tiny_model, bi_encoder):  # a plain transformers directory and a ragtrain save
        line = user_error(["prepare-data", str(docs_dir), "-o", str(tmp_path / "out"), "--teacher", str(teacher)])
        assert f"--teacher {teacher} is not a cross-encoder: its config.json names BertModel" in line
        assert not (tmp_path / "out").exists()


def test_the_hybrid_teacher_embeds_a_prompted_model_as_evaluates_hybrid_row(tmp_path, tiny_model):
    """One model with its own prompts: the teacher's fused scores are those computed from the embeddings evaluate's
    hybrid:MODEL row uses (prompts and length the model's own), and the prompts change them."""
    from ragtrain.commands.evaluate import embed_dense
    from ragtrain.config.evaluate import EvaluateConfig
    from ragtrain.model.saving import save_encoder
    from ragtrain.model.settings import TextOptions

    prompted = tmp_path / "prompted"
    save_encoder(load_encoder(str(tiny_model), TextOptions(query_prompt="query: ", document_prompt="passage: ")), prompted)
    rows = [dict(r) for r in ROWS]
    texts = CORPUS + ["a dog in the city"]
    add_teacher_scores(rows, CORPUS, Embedder(load_encoder(str(prompted)), str(prompted), CPU, EmbeddingCache(None)),
                       0.3, CPU, Counter())
    config = EvaluateConfig(models=(f"hybrid:{prompted}",), eval_data=tmp_path, use_cache=False, batch_size=8)
    row, _, _ = embed_dense(str(prompted), {"corpus": texts, "queries": ["cat tree", "planet orbit"]}, config, CPU,
                            EmbeddingCache(None))
    bm25 = bm25_matrix(build_bm25(texts), ["cat tree", "planet orbit"], len(texts))
    fused = 0.3 * zscores(bm25) + 0.7 * zscores(row["queries"] @ row["corpus"].T)
    assert rows[0]["scores"] == pytest.approx(fused[0, [0, 1, 4]].tolist(), abs=1e-5)
    assert rows[1]["scores"] == pytest.approx(fused[1, [2, 3]].tolist(), abs=1e-5)
    plain = [dict(r) for r in ROWS]
    add_teacher_scores(plain, CORPUS, Embedder(load_encoder(str(tiny_model)), str(tiny_model), CPU, EmbeddingCache(None)),
                       0.3, CPU, Counter())
    assert plain[0]["scores"] != pytest.approx(rows[0]["scores"], abs=1e-3)  # the prompts are really used


def test_an_embedder_encodes_a_text_once_per_side_and_gives_what_a_fresh_one_gives(tiny_model, monkeypatch):
    """The hybrid teacher after a hybrid or dense miner: the corpus the miner embedded is not encoded again, and
    the reassembled rows equal a fresh encoding's."""
    import numpy as np

    import ragtrain.retrieval.embedding as embedding

    encoded = []
    real = embedding.embed_parts

    def counting(encoder, model_dir, parts, *args):
        encoded.extend(text for _, texts in parts.values() for text in texts)
        return real(encoder, model_dir, parts, *args)

    monkeypatch.setattr(embedding, "embed_parts", counting)
    embedder = Embedder(load_encoder(str(tiny_model)), str(tiny_model), CPU, EmbeddingCache(None))
    first = embedder.embed({"mining": (embedding.DOCUMENTS, CORPUS[:3])}).parts["mining"]
    later = embedder.embed({"teacher": (embedding.DOCUMENTS, CORPUS[::-1]),
                            "queries": (embedding.QUERIES, CORPUS[:1])}).parts
    assert encoded == [*CORPUS[:3], CORPUS[3], CORPUS[0]]  # the documents' new text, and the query side anew
    fresh = Embedder(load_encoder(str(tiny_model)), str(tiny_model), CPU, EmbeddingCache(None))
    expected = fresh.embed({"teacher": (embedding.DOCUMENTS, CORPUS[::-1])}).parts["teacher"]
    assert np.allclose(later["teacher"], expected, atol=1e-5)
    assert np.allclose(later["teacher"][1:], first[::-1], atol=0)
