"""The BM25 + dense fusion (hand-computed z-scores), its weight tuning, and evaluate's hybrid:MODEL row."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DOCS, QUERIES, evaluate_config, quiet_console, user_error, write_beir_folder

from ragtrain.commands.evaluate import evaluate
from ragtrain.retrieval.hybrid import HybridScorer, fuse, tune_weight, zscores


def test_zscores_by_hand():
    scores = np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]])
    std = np.sqrt(2 / 3)  # population std of 1, 2, 3
    assert np.allclose(zscores(scores), [[-1 / std, 0, 1 / std], [0, 0, 0]])  # a constant row: all zeros


def test_fuse_by_hand():
    bm25 = np.array([[0.0, 0.0, 6.0]])  # z: [-0.7071, -0.7071, 1.4142]
    dense = np.array([[0.9, 0.1, 0.5]])  # z: [1.2247, -1.2247, 0]
    fused = fuse(bm25, dense, 0.25)
    assert np.allclose(fused, [[0.25 * -0.70711 + 0.75 * 1.22474, 0.25 * -0.70711 - 0.75 * 1.22474, 0.25 * 1.41421]],
                       atol=1e-4)
    assert np.allclose(fuse(bm25, dense, 1.0), zscores(bm25)) and np.allclose(fuse(bm25, dense, 0.0), zscores(dense))


def test_tuning_picks_the_weight_that_ranks_best():
    # query 0 shares words with doc 2 only; the dense scores point at doc 0: only BM25 (weight near 1) finds doc 2
    texts = ["alpha beta", "gamma delta", "tree river"]
    scorer = HybridScorer(texts, np.eye(3, dtype=np.float32))
    weight, means = tune_weight(scorer, ["river tree"], np.array([[1.0, 0.2, 0.0]], dtype=np.float32), ["q"],
                                {"q": {"d2": 1}}, ["d0", "d1", "d2"])
    assert means[1.0] == 1.0 and means[0.0] < 1.0
    assert weight == min(w for w, m in means.items() if m == 1.0)  # the lowest of the best


def test_hybrid_row_with_weight_one_ranks_as_bm25(beir, tmp_path, tiny_model):
    model = f"hybrid:{tiny_model}"
    results = evaluate(evaluate_config(beir, tmp_path, "bm25", model, hybrid_weight=1.0), quiet_console())
    bm25, hybrid = results["models"]["bm25"], results["models"][model]
    assert hybrid["hybrid_weight"] == 1.0 and hybrid["similarity"].startswith("hybrid (1 bm25 z")
    assert hybrid["per_query"] == bm25["per_query"]


def test_hybrid_row_with_weight_zero_ranks_as_the_dense_model(beir, tmp_path, tiny_model):
    model = f"hybrid:{tiny_model}"
    results = evaluate(evaluate_config(beir, tmp_path, str(tiny_model), model, hybrid_weight=0.0), quiet_console())
    assert results["models"][model]["per_query"] == results["models"][str(tiny_model)]["per_query"]


def test_hybrid_weight_tuned_on_another_split(tmp_path, tiny_model):
    data = write_beir_folder(tmp_path / "eval", [("q1", "d1", 1), ("q2", "d2", 1)], split="test")
    (data / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq3\td3\t1\n")
    model = f"hybrid:{tiny_model}"
    results = evaluate(evaluate_config(data, tmp_path, model, hybrid_tune_split="train"), quiet_console())
    tuning = results["models"][model]["hybrid_tuning"]
    assert tuning["split"] == "train" and len(tuning["ndcg@10_by_weight"]) == 21
    assert results["models"][model]["hybrid_weight"] == max(
        tuning["ndcg@10_by_weight"], key=lambda w: (tuning["ndcg@10_by_weight"][w], -w))
    assert set(DOCS) and set(QUERIES)


@pytest.mark.parametrize("extra, message", [
    (["--hybrid-tune-split", "test"], "is the evaluated split"),
    (["--hybrid-weight", "0.3", "--hybrid-tune-split", "train"], "contradict each other"),
    (["--hybrid-weight", "1.5"], "--hybrid-weight must be in [0, 1]"),
])
def test_hybrid_option_errors(beir, tiny_model, extra, message):
    assert message in user_error(["evaluate", f"hybrid:{tiny_model}", "--eval-data", str(beir), *extra])


def test_hybrid_options_without_a_hybrid_row(beir, tiny_model):
    line = user_error(["evaluate", str(tiny_model), "--eval-data", str(beir), "--hybrid-weight", "0.3"])
    assert "apply to hybrid:MODEL rows" in line
    assert "hybrid:MODEL" in user_error(["evaluate", "hybrid:", "--eval-data", str(beir)])
    assert "not found" in user_error(["evaluate", "hybrid:./nowhere", "--eval-data", str(beir)])
