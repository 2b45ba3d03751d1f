"""merge: the weights of models averaged (hand-computed), interpolation with a base, and the models that cannot be
merged."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from ragtrain.commands.merge import merge
from ragtrain.config.merge import MergeConfig
from ragtrain.model.loading import load_encoder
from ragtrain.model.merging import merge_weights
from tests.conftest import build_tiny_model, user_error


def weights_of(path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def test_merge_weights_scales_to_one_and_gives_the_base_its_share():
    assert merge_weights(2, None, None) == [0.5, 0.5]
    assert merge_weights(2, (1.0, 3.0), None) == [0.25, 0.75]
    assert merge_weights(2, (1.0, 3.0), 0.5) == [0.125, 0.375, 0.5]
    assert merge_weights(1, None, 0.25) == [0.75, 0.25]


def test_a_soup_is_the_weighted_mean_of_every_tensor(tmp_path):
    a, b = build_tiny_model(tmp_path / "a", seed=0), build_tiny_model(tmp_path / "b", seed=1)
    out = merge(MergeConfig(models=(str(a), str(b)), output_dir=tmp_path / "soup", weights=(1.0, 3.0)))
    merged, wa, wb = weights_of(out), weights_of(a), weights_of(b)
    assert merged.keys() == wa.keys()
    for name, value in merged.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (0.25 * wa[name].double() + 0.75 * wb[name].double()).float())
    # a normal ragtrain model: it loads, with the first model's pooling and length
    encoder = load_encoder(str(out))
    assert encoder.settings.pooling == "mean" and json.loads((out / "ragtrain.json").read_text())["max_seq_length"] == 128


def test_interpolation_with_the_base_at_zero_and_one_gives_back_each_model(tmp_path):
    tuned, base = build_tiny_model(tmp_path / "tuned", seed=0), build_tiny_model(tmp_path / "base", seed=1)
    # a model train saved has attention dropout off; its base has it on: no difference of architecture
    config = json.loads((tuned / "config.json").read_text())
    (tuned / "config.json").write_text(json.dumps(config | {"attention_probs_dropout_prob": 0.0}))
    none = merge(MergeConfig(models=(str(tuned),), output_dir=tmp_path / "w0", base=str(base), base_weight=0.0))
    full = merge(MergeConfig(models=(str(tuned),), output_dir=tmp_path / "w1", base=str(base), base_weight=1.0))
    half = merge(MergeConfig(models=(str(tuned),), output_dir=tmp_path / "w5", base=str(base), base_weight=0.5))
    for name, value in weights_of(tuned).items():
        assert torch.equal(weights_of(none)[name], value)
        assert torch.equal(weights_of(full)[name], weights_of(base)[name])
        torch.testing.assert_close(weights_of(half)[name], (value + weights_of(base)[name]) / 2)


def test_models_of_different_shapes_or_a_bad_request_are_one_line(tmp_path):
    small, wide = build_tiny_model(tmp_path / "small"), build_tiny_model(tmp_path / "wide", hidden_size=48)
    line = user_error(["merge", str(small), str(wide), "-o", str(tmp_path / "out")])
    assert f"cannot merge {wide} with {small}: their config hidden_size differ (32 against 48)" in line
    assert "needs two models, or one model and --base" in user_error(["merge", str(small), "-o", str(tmp_path / "o")])
    assert "--weights gives 1 weights for 2 models" in user_error(
        ["merge", str(small), str(small), "--weights", "1", "-o", str(tmp_path / "o")])
    assert "--base-weight must be in [0, 1]" in user_error(
        ["merge", str(small), "--base", str(small), "--base-weight", "1.5", "-o", str(tmp_path / "o")])
    assert "is the input" in user_error(["merge", str(small), str(small), "-o", str(small), "--overwrite"])
    assert not (tmp_path / "out").exists() and not (tmp_path / "o").exists()


def test_overwrite_replaces_an_earlier_merge_and_a_training_run_is_merged_through_its_model(tmp_path):
    """merge RUN said 'Unrecognized model' though evaluate takes run folders; --overwrite replaces a model ragtrain
    saved (evaluate --update-card's record included), and only that."""
    a, b = build_tiny_model(tmp_path / "a", seed=0), build_tiny_model(tmp_path / "b", seed=1)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"train_data": "t.jsonl", "output_dir": str(run)}))
    merge(MergeConfig(models=(str(b),), output_dir=run / "best", base=str(a), base_weight=0.0))  # a run's best/ = b
    out = merge(MergeConfig(models=(str(a), str(run)), output_dir=tmp_path / "soup"))
    for name, value in weights_of(out).items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (weights_of(a)[name] + weights_of(b)[name]) / 2)
    (out / "evaluation.json").write_text("[]")
    again = merge(MergeConfig(models=(str(b), str(a)), output_dir=out, weights=(1.0, 0.0), overwrite=True))
    assert torch.equal(weights_of(again)["embeddings.word_embeddings.weight"], weights_of(b)["embeddings.word_embeddings.weight"])
    assert not (again / "evaluation.json").exists()  # replaced whole
