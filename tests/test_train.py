"""train(): resume equals an uninterrupted run, seeds, precision, full batches, non-finite steps, early stopping,
resume checks, the learning-rate schedule per step, user errors, and the run directory's contents."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

import ragtrain.training.loop as train_module
import ragtrain.training.step as step_module
from ragtrain.cli import app
from ragtrain.commands.evaluate import evaluate
from ragtrain.commands.train import train
from ragtrain.config.evaluate import EvaluateConfig
from ragtrain.config.train import TrainConfig
from ragtrain.data.triples import epoch_batches, load_triples, tokenize_triples
from ragtrain.errors import UserError
from ragtrain.model.loading import load_encoder
from ragtrain.training.optim import lr_multiplier
from tests.conftest import encoder_at, quiet_console, train_interrupted, user_error, write_beir_folder, write_triples


def config(tmp_path, tiny_model, **options) -> TrainConfig:
    triples = tmp_path / "train.jsonl"
    if not triples.exists():
        write_triples(triples, count=24, negatives=1)
    base = dict(train_data=triples, model=str(tiny_model), output_dir=tmp_path / "run", batch_size=4,
                max_seq_length=32, learning_rate=1e-3, device="cpu", log_steps=1)
    return TrainConfig(**(base | options))


def rows(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def losses(run_dir) -> list[float]:
    return [row["loss"] for row in rows(run_dir) if "loss" in row]


@pytest.mark.slow
def test_resumed_run_ends_with_the_same_weights(tmp_path, tiny_model, monkeypatch):
    options = dict(epochs=2, save_steps=4, output_dim=8, isotropy_weight=0.1)
    reference = train(config(tmp_path, tiny_model, output_dir=tmp_path / "straight", **options))
    # killed after the checkpoint at step 4, mid-way through epoch 1 (6 steps per epoch)
    train_interrupted(monkeypatch, config(tmp_path, tiny_model, **options), at_call=7)
    resumed = train(config(tmp_path, tiny_model, resume="latest", **options))
    expected, got = load_file(reference / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert max((expected[k] - got[k]).abs().max().item() for k in expected) <= 1e-6
    head = load_file(reference / "2_Dense" / "model.safetensors")
    assert torch.allclose(head["linear.weight"], load_file(resumed / "2_Dense" / "model.safetensors")["linear.weight"], atol=1e-6)
    assert losses(tmp_path / "run") == pytest.approx(losses(tmp_path / "straight"), abs=1e-6)


@pytest.mark.parametrize("pooling", ["max", "mean_sqrt_len", "weightedmean"])
def test_a_run_with_any_offered_pooling_finishes_and_resumes_with_its_card(tmp_path, tiny_model, monkeypatch, pooling):
    """These poolings crashed in the model card after the whole run had trained, and again on --resume."""
    from ragtrain.model.card import POOLING_CODE

    options = dict(pooling=pooling, save_steps=2)
    train_interrupted(monkeypatch, config(tmp_path, tiny_model, **options), at_call=4)
    final = train(config(tmp_path, tiny_model, resume="latest", **options))
    card = (final / "README.md").read_text()
    assert f"{pooling} pooling" in card and POOLING_CODE[pooling].splitlines()[-1] in card
    assert load_encoder(str(final)).settings.pooling == pooling


@pytest.mark.slow
def test_resume_with_other_options_keeps_the_checkpoints_and_warns(tmp_path, tiny_model, capsys):
    train(config(tmp_path, tiny_model))
    train(config(tmp_path, tiny_model, resume="latest", batch_size=6, log_steps=3))
    err = capsys.readouterr().err
    assert "--batch-size 6 differs from the checkpoint; keeping the checkpoint's 4" in err
    assert "--log-steps differs from the checkpoint (1); using 3" in err


@pytest.mark.slow
def test_same_seed_same_loss_curve(tmp_path, tiny_model):
    train(config(tmp_path, tiny_model, output_dir=tmp_path / "a", seed=3))
    train(config(tmp_path, tiny_model, output_dir=tmp_path / "b", seed=3))
    train(config(tmp_path, tiny_model, output_dir=tmp_path / "c", seed=4))
    assert len(losses(tmp_path / "a")) == 6
    assert losses(tmp_path / "a") == losses(tmp_path / "b")
    assert losses(tmp_path / "a") != losses(tmp_path / "c")


@pytest.mark.slow
def test_run_directory_contents(tmp_path, tiny_model):
    val = write_triples(tmp_path / "val.jsonl", count=8)
    cfg = config(tmp_path, tiny_model, val_data=val, epochs=3, keep_last=1, symmetric=True, isotropy_weight=0.05,
                 output_dim=8, base_learning_rate=1e-4, head_learning_rate=1e-2)
    train(cfg)
    run = cfg.output_dir
    saved = json.loads((run / "config.json").read_text())
    assert saved["batch_size"] == 4 and saved["symmetric"] is True and saved["total_steps"] == 18
    logged = rows(run)
    steps = [r for r in logged if "loss" in r]
    assert [r["step"] for r in steps] == list(range(1, 19))
    for row in steps:  # each part logged on its own, and the total made of them
        assert row["loss"] == pytest.approx((row["loss_q2d"] + row["loss_d2q"]) / 2 + 0.05 * row["loss_isotropy"], rel=1e-5)
        assert row["batch_size"] == 4 and row["masked_candidates"] == 0  # 24 distinct triples: full batches, no repeats
        assert row["grad_norm"] > 0 and row["triples_per_s"] > 0 and row["tokens_per_s"] > row["triples_per_s"]
    assert steps[0]["lr_head_decay"] == pytest.approx(100 * steps[0]["lr_base_decay"])
    assert [r["step"] for r in logged if "val_loss" in r] == [0, 6, 12, 18]  # the base model, then each epoch's end
    best = json.loads((run / "checkpoints" / "step-18" / "state.json").read_text())["best_step"]
    kept = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert kept == sorted({"step-18"} | ({f"step-{best}"} if best else set()))  # keep-last 1, plus the best
    assert (run / "best" / "model.safetensors").is_file() and (run / "final" / "modules.json").is_file()


def repeated_triples(path, count: int = 10):
    """Triples where 6 share one positive passage (written with other spacing and case each time)."""
    rows = [{"query": f"question number {n}", "positive": ("The  river FLOWS to the sea" if n % 2 else
             "the river flows to the sea") if n < 6 else f"a passage about the moon {n}",
             "negatives": [f"a bird in a tree {n}"]} for n in range(count)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.slow
def test_full_batches_with_repeated_passages_log_their_size_and_masked_candidates(tmp_path, tiny_model):
    triples = repeated_triples(tmp_path / "train.jsonl")
    cfg = config(tmp_path, tiny_model, epochs=2)
    train(cfg)
    steps = [r for r in rows(cfg.output_dir) if "loss" in r]
    data = tokenize_triples(load_triples(triples), encoder_at(tiny_model, 32))
    expected = []
    for epoch in range(2):
        for batch in epoch_batches(data, 4, cfg.seed, epoch):
            shared = sum(i < 6 for i in batch)  # each of them meets the others' copies of its passage
            expected.append((len(batch), shared * (shared - 1)))
    assert [(r["batch_size"], r["masked_candidates"]) for r in steps] == expected
    assert sorted(size for size, _ in expected) == [2, 2, 4, 4, 4, 4]  # ceil(10 / 4) = 3 batches in each epoch
    assert sum(masked for _, masked in expected) > 0


@pytest.mark.slow
def test_validation_on_a_beir_set_and_early_stopping(tmp_path, tiny_model):
    beir = tmp_path / "eval"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "title": "", "text": f"river moon {i}"}) + "\n" for i in range(12)))
    (beir / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": f"moon {i}"}) + "\n" for i in range(4)))
    (beir / "qrels" / "val.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(4)))
    # a rate of ~0 changes nothing: no step beats the base model, validated before the first step
    cfg = config(tmp_path, tiny_model, eval_data=beir, eval_steps=2, early_stopping_patience=2, learning_rate=1e-30)
    train(cfg)
    validations = [r for r in rows(cfg.output_dir) if "ndcg@10" in r]
    assert [r["step"] for r in validations] == [0, 2, 4]  # stopped after two validations without improvement
    # the base model's figures are what `ragtrain evaluate` measures on the same split and length
    reference = evaluate(EvaluateConfig(models=(str(tiny_model),), eval_data=beir, split="val", k_values=(10,),
                                        batch_size=64, max_seq_length=32, device="cpu", use_cache=False),
                         console=quiet_console())["models"][str(tiny_model)]["metrics"]
    for row in validations:
        assert (row["recall@10"], row["ndcg@10"]) == pytest.approx((reference["recall@10"], reference["ndcg@10"]), abs=1e-9)
    state = json.loads((cfg.output_dir / "checkpoints" / "step-4" / "state.json").read_text())
    assert state["best_step"] == 0 and (cfg.output_dir / "best" / "model.safetensors").is_file()  # best/ = the base
    base = load_encoder(str(tiny_model))
    best = load_encoder(str(cfg.output_dir / "best"))
    for (name, a), b in zip(base.state_dict().items(), best.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


@pytest.mark.slow
def test_early_stopping_at_an_epoch_end_stops_at_once(tmp_path, tiny_model):
    """Validated at each epoch's end only: no improvement after epoch 1 ends the run there, not one step later."""
    val = write_triples(tmp_path / "val.jsonl", count=8)
    cfg = config(tmp_path, tiny_model, val_data=val, epochs=3, early_stopping_patience=1, learning_rate=1e-30)
    train(cfg)
    logged = rows(cfg.output_dir)
    assert [r["step"] for r in logged if "loss" in r] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in logged if "val_loss" in r] == [0, 6]
    state = json.loads((cfg.output_dir / "checkpoints" / "step-6" / "state.json").read_text())
    assert state["stopped_early"] and state["step"] == 6 and state["epoch"] == 1


@pytest.mark.slow
def test_the_learning_rate_advances_once_per_optimizer_step_with_accumulation(tmp_path, tiny_model, monkeypatch):
    calls = {"n": 0}
    real = torch.optim.AdamW.step

    def counted(self, *args, **kwargs):
        calls["n"] += 1
        return real(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", counted)
    cfg = config(tmp_path, tiny_model, grad_accum_steps=2, warmup_steps=2, min_lr_ratio=0.1)
    train(cfg)
    steps = [r for r in rows(cfg.output_dir) if "loss" in r]
    assert calls["n"] == 6 and [r["step"] for r in steps] == [1, 2, 3, 4, 5, 6]
    assert [r["lr_base_decay"] for r in steps] == pytest.approx([1e-3 * lr_multiplier(s, 2, 6, 0.1) for s in range(6)])


@pytest.mark.slow
def test_fp16_on_cpu_is_refused_and_bf16_runs(tmp_path, tiny_model):
    with pytest.raises(UserError, match="--precision fp16 needs a CUDA device"):
        train(config(tmp_path, tiny_model, precision="fp16"))
    assert not (tmp_path / "run").exists()
    final = train(config(tmp_path, tiny_model, precision="bf16"))
    assert json.loads((tmp_path / "run" / "config.json").read_text())["precision"] == "bf16"
    assert len(losses(tmp_path / "run")) == 6 and all(math.isfinite(loss) for loss in losses(tmp_path / "run"))
    assert (final / "model.safetensors").is_file()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fp16_with_a_scaler_on_cuda(tmp_path, tiny_model):
    final = train(config(tmp_path, tiny_model, device="cuda", precision="fp16", epochs=2))
    steps = [r for r in rows(tmp_path / "run") if "loss" in r]
    assert len(steps) == 12 and all(math.isfinite(r["loss"]) for r in steps)
    assert steps[-1]["skipped_steps"] < 12  # the scaler found a scale at which steps update the weights
    trained, base = load_file(final / "model.safetensors"), load_file(tiny_model / "model.safetensors")
    assert any(not torch.equal(trained[k], base[k]) for k in base)


# ---- non-finite steps and weights
def nan_from_step(monkeypatch, first: int, last: int = 10**9) -> None:
    """Make the loss NaN on the training steps first..last (1-based), through the real step."""
    calls = {"n": 0}
    real = step_module.contrastive_loss

    def loss(*args, **kwargs):
        value, parts = real(*args, **kwargs)
        if torch.is_grad_enabled():
            calls["n"] += 1
            if first <= calls["n"] <= last:
                return value * math.nan, parts | {"loss": math.nan}
        return value, parts

    monkeypatch.setattr(step_module, "contrastive_loss", loss)


@pytest.mark.slow
def test_non_finite_steps_are_skipped_and_counted(tmp_path, tiny_model, monkeypatch):
    nan_from_step(monkeypatch, 3, 4)
    cfg = config(tmp_path, tiny_model, save_steps=1, keep_last=10)
    with pytest.raises(UserError, match="2 of 6 steps were skipped"):  # a third of the run: it failed (below)
        train(cfg)
    assert not (cfg.output_dir / "final").exists()
    steps = [r for r in rows(cfg.output_dir) if "loss" in r]
    assert [r["skipped_steps"] for r in steps] == [0, 0, 1, 2, 2, 2]
    weights = [load_file(cfg.output_dir / "checkpoints" / f"step-{s}" / "model" / "model.safetensors") for s in (2, 4, 5)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])  # steps 3 and 4 changed nothing
    assert any(not torch.equal(weights[1][k], weights[2][k]) for k in weights[0])  # step 5 did


@pytest.mark.slow
def test_ten_non_finite_steps_in_a_row_stop_the_run_with_one_line(tmp_path, tiny_model, monkeypatch):
    from typer.testing import CliRunner

    from ragtrain.cli import app

    nan_from_step(monkeypatch, 3)
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--train-data", str(write_triples(tmp_path / "t.jsonl", count=60)),
                                      "--model", str(tiny_model), "-o", str(run), "--batch-size", "4", "--max-seq-length",
                                      "32", "--save-steps", "2", "--keep-last", "1", "--device", "cpu",
                                      "--log-steps", "1"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    (line,) = [line for line in result.output.splitlines() if "error" in line]
    assert line.startswith("error: training stopped at step 12") and "not finite in 10 steps in a row" in line
    assert str(run / "checkpoints" / "step-10") in line and "--learning-rate" in line
    assert not (run / "final").exists()
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-10"]
    kept = load_file(run / "checkpoints" / "step-10" / "model" / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in kept.values())
    assert [r["skipped_steps"] for r in rows(run) if "loss" in r] == [0, 0, *range(1, 11)]


def test_one_skipped_step_in_ten_is_tolerated_and_one_more_fails_the_run(tmp_path, tiny_model, monkeypatch):
    """More than 10% of the steps skipped as non-finite fails the run; 10% (1 of 10) does not."""
    write_triples(tmp_path / "train.jsonl", count=40)  # 10 steps of 4
    nan_from_step(monkeypatch, 3, 3)
    assert train(config(tmp_path, tiny_model)).is_dir()  # 1 of 10: final/ written
    nan_from_step(monkeypatch, 3, 4)
    with pytest.raises(UserError, match="2 of 10 steps were skipped") as error:
        train(config(tmp_path, tiny_model, output_dir=tmp_path / "two"))
    assert "final/ was not written" in str(error.value) and not (tmp_path / "two" / "final").exists()


def test_the_issues_learning_rate_of_1e30_fails_the_run_with_one_line(tmp_path, tiny_model):
    """7 of 8 steps skipped and finite weights 1e30 off used to exit 0 with 'trained model saved'."""
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--train-data", str(write_triples(tmp_path / "t.jsonl", count=32)),
                                      "--model", str(tiny_model), "-o", str(run), "--batch-size", "4", "--max-seq-length",
                                      "32", "--device", "cpu", "--learning-rate", "1e30"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "trained model saved" not in result.output
    (line,) = [line for line in result.output.splitlines() if "error" in line]
    skipped = [r["skipped_steps"] for r in rows(run) if "loss" in r][-1]
    assert skipped > 0 and f"{skipped} of 8 steps were skipped" in line
    assert "final/ was not written" in line and str(run / "checkpoints" / "step-8") in line
    assert not (run / "final").exists()


@pytest.mark.parametrize("scaler, loss, diverged", [(False, math.nan, 1), (False, 2.0, 1), (True, math.nan, 1),
                                                    (True, 2.0, 0)])
def test_an_fp16_scalers_overflow_of_a_finite_loss_is_calibration_not_divergence(scaler, loss, diverged):
    """GradScaler skips the first steps of an fp16 run while it finds its scale (gradient inf, loss finite): those do
    not count against the run's share of diverged steps; a loss that is not finite always does."""
    from types import SimpleNamespace

    from ragtrain.training.checkpoint import TrainState
    from ragtrain.training.step import StepResult

    run = SimpleNamespace(scaler=torch.amp.GradScaler("cpu", enabled=scaler), total_steps=100,
                          config=SimpleNamespace(log_steps=1000, output_dir=None))
    result = StepResult({"loss": loss}, math.inf, True, 10, 4, 0)
    state = train_module._after_step(run, TrainState(), result, None, 0, 1.0)
    assert (state.skipped_steps, state.diverged_steps, state.skipped_in_a_row) == (1, diverged, 1)


@pytest.mark.parametrize("metric, first, last, failed", [
    ("ndcg@10", 0.112, 0.0, True),  # the issue's case: from 0.112 untrained to 0.0
    ("ndcg@10", 0.112, 0.0111, True),  # below 10% of the start
    ("ndcg@10", 0.112, 0.0113, False),  # just above 10% of it: low, but no collapse
    ("ndcg@10", 0.0, 0.0, False),  # nothing to fall from
    ("val_loss", 2.0, 30.0, False),  # a loss that grows is early stopping's business, not a failure
    ("val_loss", 2.0, math.nan, True),
])
def test_a_run_whose_watched_metric_collapsed_failed(tmp_path, metric, first, last, failed):
    from ragtrain.training.checkpoint import TrainState
    from ragtrain.training.finish import run_failure

    cfg = TrainConfig(train_data=tmp_path / "t.jsonl", val_data=tmp_path / "v.jsonl", eval_data=tmp_path / "eval",
                      metric=metric)
    failure = run_failure(cfg, TrainState(step=8, first_metric=first, last_metric=last))
    assert (failure is not None) == failed, failure


@pytest.mark.slow
def test_non_finite_weights_are_never_saved(tmp_path, tiny_model, monkeypatch):
    real = train_module.train_step
    calls = {"n": 0}

    def poisoned(model, *args, **kwargs):
        result = real(model, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:  # an update that left a weight infinite
            with torch.no_grad():
                next(model.parameters()).view(-1)[0] = math.inf
        return result

    monkeypatch.setattr(train_module, "train_step", poisoned)
    val = write_triples(tmp_path / "val.jsonl", count=8)
    cfg = config(tmp_path, tiny_model, val_data=val, eval_steps=2)
    with pytest.raises(UserError, match="weights are not finite after step 4") as error:
        train(cfg)
    assert str(cfg.output_dir / "checkpoints" / "step-2") in str(error.value)
    assert not (cfg.output_dir / "final").exists()
    assert sorted(p.name for p in (cfg.output_dir / "checkpoints").iterdir()) == ["step-2"]
    best = load_file(cfg.output_dir / "best" / "model.safetensors")  # best/ is at most step 2's, finite
    assert all(torch.isfinite(w).all() for w in best.values())


# ---- what resume checks
@pytest.mark.slow
def test_resume_warns_when_the_training_data_changed(tmp_path, tiny_model, capsys):
    cfg = config(tmp_path, tiny_model, epochs=2)
    train(cfg)
    capsys.readouterr()
    train(config(tmp_path, tiny_model, epochs=2, resume=str(cfg.output_dir / "checkpoints" / "step-6")))
    assert "changed since the checkpoint" not in capsys.readouterr().err
    with cfg.train_data.open("a") as handle:
        handle.write(json.dumps({"query": "one more", "positive": "another passage", "negatives": []}) + "\n")
    train(config(tmp_path, tiny_model, epochs=2, resume=str(cfg.output_dir / "checkpoints" / "step-6")))
    warnings = [line for line in capsys.readouterr().err.splitlines() if "changed since the checkpoint" in line]
    assert len(warnings) == 1 and str(cfg.train_data) in warnings[0]


@pytest.mark.slow
# an fp16 run's config.json, as ragtrain 0.1 first wrote it (mixed_precision and precision) and as it writes it now
@pytest.mark.parametrize("edit, words", [({"mixed_precision": True, "precision": "fp16"}, "--precision fp16 needs a CUDA device"),
                                         ({"precision": "fp16"}, "--precision fp16 needs a CUDA device"),
                                         ({"batch_size": 1}, "--batch-size must be at least 2")],
                         ids=["old-fp16-on-cpu", "fp16-on-cpu", "batch-size-1"])
def test_options_are_validated_again_after_reconciling_with_the_checkpoint(tmp_path, tiny_model, edit, words):
    """A checkpoint's kept options (here edited in its config.json, as one written on a GPU would hold fp16)
    are checked with the new ones before anything runs."""
    cfg = config(tmp_path, tiny_model)
    train(cfg)
    saved = cfg.output_dir / "checkpoints" / "step-6" / "config.json"
    saved.write_text(json.dumps(json.loads(saved.read_text()) | edit))
    metrics_before = (cfg.output_dir / "metrics.jsonl").read_text()
    with pytest.raises(UserError, match=words):
        train(config(tmp_path, tiny_model, resume="latest"))
    assert (cfg.output_dir / "metrics.jsonl").read_text() == metrics_before


@pytest.mark.slow
def test_max_seq_length_above_the_models_limit_is_capped_with_a_warning(tmp_path, tiny_model, capsys):
    long_texts = tmp_path / "long.jsonl"
    long_texts.write_text("".join(json.dumps({"query": f"question {n} " + "moon " * 150, "positive": "river " * 200 + str(n),
                                              "negatives": ["tree " * 180]}) + "\n" for n in range(8)))
    final = train(config(tmp_path, tiny_model, train_data=long_texts, max_seq_length=512))
    assert f"--max-seq-length 512 is above model {tiny_model}'s limit of 128 tokens; using 128" in capsys.readouterr().err
    record = json.loads((tmp_path / "run" / "config.json").read_text())  # the flag as given, what the model read
    assert (record["max_seq_length"], record["model_settings"]["max_seq_length"]) == (512, 128)
    assert json.loads((final / "ragtrain.json").read_text())["max_seq_length"] == 128


# ---- user errors through the CLI: one line, exit code 2, nothing written
@pytest.mark.parametrize("content, words", [(None, "not found"), ("", "holds no triples"),
                                             ('{"query": "q", "positive": "p"}\n{"query": 1}\n', "t.jsonl:2")])
def test_bad_training_data(tmp_path, tiny_model, content, words):
    path = tmp_path / "t.jsonl"
    if content is not None:
        path.write_text(content)
    assert words in user_error(["train", "--train-data", str(path), "--model", str(tiny_model), "-o", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("extra, words", [
    (["--batch-size", "1"], "--batch-size must be at least 2"),
    (["--freeze-base"], "--freeze-base trains only the projection head"),
    (["--precision", "fp16", "--device", "cpu"], "--precision fp16 needs a CUDA device (cpu has no fast fp16 kernels)"),
    (["--model", "no-such-org/no-such-model"], "cannot load model"),
    (["--resume"], "no checkpoint"),
])
def test_bad_options(tmp_path, triples_file, tiny_model, extra, words, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = ["--train-data", str(triples_file), "--model", str(tiny_model), "-o", str(tmp_path / "run"), *extra]
    assert words in user_error(["train", *args])
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_device_cuda_without_cuda_is_one_line(tmp_path, triples_file, tiny_model):
    line = user_error(["train", "--train-data", str(triples_file), "--model", str(tiny_model), "-o", str(tmp_path / "run"),
                      "--device", "cuda"])
    assert line == "error: --device cuda asked for but CUDA is not available; use --device cpu or auto"
    assert not (tmp_path / "run").exists()


def test_an_existing_run_needs_resume_or_overwrite(tmp_path, triples_file, tiny_model):
    run = tmp_path / "run"
    run.mkdir()
    saved = json.dumps({"train_data": str(triples_file), "output_dir": str(run)})  # a run's config.json
    (run / "config.json").write_text(saved)
    line = user_error(["train", "--train-data", str(triples_file), "--model", str(tiny_model), "-o", str(run)])
    assert "--resume" in line and "--overwrite" in line
    assert (run / "config.json").read_text() == saved


def test_a_train_file_with_one_distinct_passage_is_refused(tmp_path, tiny_model):
    rows = [{"query": f"question {n}", "positive": "the same passage", "negatives": []} for n in range(8)]
    rows[3]["positive"] = "the  same   passage"  # a whitespace variant tokenizes the same
    path = tmp_path / "same.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(UserError, match="single distinct passage"):
        train(TrainConfig(train_data=path, model=str(tiny_model), output_dir=tmp_path / "run", batch_size=4,
                          max_seq_length=32, device="cpu"))
    assert not (tmp_path / "run" / "final").exists()


@pytest.mark.slow
def test_warmup_longer_than_the_run_is_a_warning(tmp_path, tiny_model, triples_file, capsys):
    train(TrainConfig(train_data=triples_file, model=str(tiny_model), output_dir=tmp_path / "run", batch_size=8,
                      max_seq_length=32, device="cpu", warmup_steps=50))
    assert "--warmup-steps 50 is more than the run's 3 steps" in capsys.readouterr().err


def test_train_warns_about_repeated_ids_in_its_eval_data_too(tmp_path, triples_file):
    beir = write_beir_folder(tmp_path / "eval", [("q1", "d1", 1)], split="val")
    with (beir / "corpus.jsonl").open("a") as handle:
        handle.write(json.dumps({"_id": "d1", "title": "", "text": "a second d1"}) + "\n")
    result = CliRunner().invoke(app, ["train", "--train-data", str(triples_file), "--eval-data", str(beir),
                                 "--model", str(tmp_path / "no-model"), "-o", str(tmp_path / "run")])
    assert result.exit_code == 2  # the missing model stops it, after the data were read
    assert "warning:" in result.output and "1 corpus duplicate ids" in result.output
