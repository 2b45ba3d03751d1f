"""The loop: resume equals an uninterrupted run, seeds, accumulation, precision, run directory contents."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import ragtrain.train as train_module
from ragtrain.config import TrainConfig
from ragtrain.data import collate, tokenize_triples, load_triples
from ragtrain.errors import UserError
from ragtrain.loss import contrastive_loss
from ragtrain.model import EncoderSpec, load_encoder
from ragtrain.runtime import grad_scaler
from ragtrain.step import train_step
from ragtrain.train import train
from tests.conftest import write_triples


def config(tmp_path, tiny_model, **options) -> TrainConfig:
    triples = tmp_path / "train.jsonl"
    if not triples.exists():
        write_triples(triples, count=24, negatives=1)
    base = dict(train_data=triples, model=str(tiny_model), output_dir=tmp_path / "run", batch_size=4,
                max_seq_length=32, learning_rate=1e-3, device="cpu", log_steps=1)
    return TrainConfig(**(base | options))


def losses(run_dir) -> list[float]:
    return [row["loss"] for row in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "loss" in row]


def test_resumed_run_ends_with_the_same_weights(tmp_path, tiny_model, monkeypatch):
    options = dict(epochs=2, save_steps=4, output_dim=8, isotropy_weight=0.1)
    reference = train(config(tmp_path, tiny_model, output_dir=tmp_path / "straight", **options))
    calls = {"n": 0}
    real_step = train_module.train_step

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:  # after the checkpoint at step 4, mid-way through epoch 1 (6 steps per epoch)
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(config(tmp_path, tiny_model, **options))
    monkeypatch.setattr(train_module, "train_step", real_step)
    resumed = train(config(tmp_path, tiny_model, resume="latest", **options))
    expected, got = load_file(reference / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert max((expected[k] - got[k]).abs().max().item() for k in expected) <= 1e-6
    head = load_file(reference / "2_Dense" / "model.safetensors")
    assert torch.allclose(head["linear.weight"], load_file(resumed / "2_Dense" / "model.safetensors")["linear.weight"], atol=1e-6)
    assert losses(tmp_path / "run") == pytest.approx(losses(tmp_path / "straight"), abs=1e-6)


def test_resume_with_other_options_keeps_the_checkpoints_and_warns(tmp_path, tiny_model, capsys):
    train(config(tmp_path, tiny_model))
    train(config(tmp_path, tiny_model, resume="latest", batch_size=6, log_steps=3))
    err = capsys.readouterr().err
    assert "--batch-size 6 differs from the checkpoint; keeping the checkpoint's 4" in err
    assert "--log-steps differs from the checkpoint (1); using 3" in err


def test_same_seed_same_loss_curve(tmp_path, tiny_model):
    train(config(tmp_path, tiny_model, output_dir=tmp_path / "a", seed=3))
    train(config(tmp_path, tiny_model, output_dir=tmp_path / "b", seed=3))
    train(config(tmp_path, tiny_model, output_dir=tmp_path / "c", seed=4))
    assert losses(tmp_path / "a") == losses(tmp_path / "b")
    assert losses(tmp_path / "a") != losses(tmp_path / "c")


def test_run_directory_contents(tmp_path, tiny_model):
    val = write_triples(tmp_path / "val.jsonl", count=8)
    cfg = config(tmp_path, tiny_model, val_data=val, epochs=3, keep_last=1, symmetric=True, isotropy_weight=0.05,
                 output_dim=8, base_learning_rate=1e-4, head_learning_rate=1e-2)
    train(cfg)
    run = cfg.output_dir
    saved = json.loads((run / "config.json").read_text())
    assert saved["batch_size"] == 4 and saved["symmetric"] is True and saved["total_steps"] == 18
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss" in r]
    assert [r["step"] for r in steps] == list(range(1, 19))
    for key in ("epoch", "lr_base_decay", "lr_head_decay", "loss_q2d", "loss_d2q", "loss_isotropy", "grad_norm",
                "triples_per_s", "tokens_per_s", "memory_mb"):
        assert key in steps[0], key
    assert steps[0]["lr_head_decay"] == pytest.approx(100 * steps[0]["lr_base_decay"])
    assert [r["step"] for r in rows if "val_loss" in r] == [0, 6, 12, 18]  # the base model, then each epoch's end
    best = json.loads((run / "checkpoints" / "step-18" / "state.json").read_text())["best_step"]
    kept = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert kept == sorted({"step-18"} | ({f"step-{best}"} if best else set()))  # keep-last 1, plus the best
    assert (run / "best" / "model.safetensors").is_file() and (run / "final" / "modules.json").is_file()


def test_validation_on_a_beir_set_and_early_stopping(tmp_path, tiny_model):
    beir = tmp_path / "eval"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "title": "", "text": f"river moon {i}"}) + "\n" for i in range(12)))
    (beir / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": f"moon {i}"}) + "\n" for i in range(4)))
    (beir / "qrels" / "val.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(4)))
    # a rate of ~0 changes nothing: no step beats the base model, validated before the first step
    cfg = config(tmp_path, tiny_model, eval_data=beir, eval_steps=2, early_stopping_patience=2, learning_rate=1e-12)
    train(cfg)
    rows = [json.loads(line) for line in (cfg.output_dir / "metrics.jsonl").read_text().splitlines()]
    validations = [r for r in rows if "ndcg@10" in r]
    assert [r["step"] for r in validations] == [0, 2, 4]  # stopped after two validations without improvement
    assert all(0 <= r["recall@10"] <= 1 for r in validations)
    state = json.loads((cfg.output_dir / "checkpoints" / "step-4" / "state.json").read_text())
    assert state["best_step"] == 0 and (cfg.output_dir / "best" / "model.safetensors").is_file()  # best/ = the base
    base, _ = load_encoder(str(tiny_model))
    best, _ = load_encoder(str(cfg.output_dir / "best"))
    for (name, a), b in zip(base.state_dict().items(), best.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_accumulation_is_the_mean_of_the_micro_batch_gradients(tiny_model):
    encoder, tokenizer = load_encoder(str(tiny_model), EncoderSpec())
    encoder.eval()  # no dropout: the two computations must see the same network
    triples = load_triples(write_triples(tiny_model.parent / "acc.jsonl", count=8))
    data = tokenize_triples(triples, tokenizer, 32)
    halves = [collate(data, part, 0) for part in ([0, 1, 2, 3], [4, 5, 6, 7])]
    cfg = TrainConfig(train_data=tiny_model, max_grad_norm=0.0, temperature=0.1)
    expected = {n: torch.zeros_like(p) for n, p in encoder.named_parameters()}
    for queries, docs in halves:  # separate losses, gradients averaged
        encoder.zero_grad()
        contrastive_loss(encoder.embed(**queries), encoder.embed(**docs), 0.1)[0].backward()
        for n, p in encoder.named_parameters():
            expected[n] += p.grad / 2 if p.grad is not None else 0
    before = {n: p.detach().clone() for n, p in encoder.named_parameters()}
    optimizer = torch.optim.SGD(encoder.parameters(), lr=1.0)
    train_step(encoder, optimizer, grad_scaler(torch.device("cpu"), False, "bf16"), halves, cfg, torch.device("cpu"))
    for n, p in encoder.named_parameters():
        assert torch.allclose(before[n] - p.detach(), expected[n], atol=1e-6), n
    # and it is not one batch of 8: that one has 14 in-batch negatives per query, not 6
    encoder.zero_grad()
    whole = collate(data, list(range(8)), 0)
    for n, p in encoder.named_parameters():
        p.data.copy_(before[n])
    contrastive_loss(encoder.embed(**whole[0]), encoder.embed(**whole[1]), 0.1)[0].backward()
    word = "transformer.embeddings.word_embeddings.weight"
    assert not torch.allclose(dict(encoder.named_parameters())[word].grad, expected[word], atol=1e-6)


def test_fp16_on_cpu_is_refused_and_bf16_runs(tmp_path, tiny_model):
    with pytest.raises(UserError, match="fp16 mixed precision is not supported on CPU"):
        train(config(tmp_path, tiny_model, mixed_precision=True, precision="fp16"))
    assert not (tmp_path / "run").exists()
    final = train(config(tmp_path, tiny_model, mixed_precision=True, precision="bf16"))
    assert all(row == row for row in losses(tmp_path / "run"))  # no NaN
    assert (final / "model.safetensors").is_file()


def test_a_scaled_step_unscales_before_clipping_and_skips_on_overflow(tiny_model):
    """The fp16 path's scaler logic, on CPU (torch's GradScaler works there): a finite scale gives the
    unscaled gradient norm and an update; an overflowing scale skips the update and says so."""
    encoder, tokenizer = load_encoder(str(tiny_model), EncoderSpec())
    encoder.eval()
    batch = [collate(tokenize_triples(load_triples(write_triples(tiny_model.parent / "s.jsonl", count=4)), tokenizer, 32),
                     [0, 1, 2, 3], 0)]
    cfg = TrainConfig(train_data=tiny_model, max_grad_norm=0.0)
    optimizer = torch.optim.SGD(encoder.parameters(), lr=0.1)
    before = {n: p.detach().clone() for n, p in encoder.named_parameters()}

    def restore() -> None:
        for n, p in encoder.named_parameters():
            p.data.copy_(before[n])

    plain = train_step(encoder, optimizer, grad_scaler(torch.device("cpu"), False, "bf16"), batch, cfg, torch.device("cpu"))
    restore()
    scaled = train_step(encoder, optimizer, torch.amp.GradScaler("cpu", init_scale=2.0**12), batch, cfg, torch.device("cpu"))
    assert not scaled.skipped and scaled.grad_norm == pytest.approx(plain.grad_norm, rel=1e-4)
    assert any(not torch.equal(p, before[n]) for n, p in encoder.named_parameters())
    restore()
    overflow = torch.amp.GradScaler("cpu", init_scale=3e38)  # loss * scale is inf: every gradient overflows
    result = train_step(encoder, optimizer, overflow, batch, cfg, torch.device("cpu"))
    assert result.skipped and overflow.get_scale() < 3e38
    assert all(torch.equal(p, before[n]) for n, p in encoder.named_parameters())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fp16_with_a_scaler_on_cuda(tmp_path, tiny_model):
    train(config(tmp_path, tiny_model, device="cuda", mixed_precision=True, precision="fp16", epochs=2))
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all("skipped_steps" in r for r in rows if "loss" in r)


# ---- user errors through the CLI: one line, exit code 2, nothing written
def cli_error(args: list[str]) -> str:
    from typer.testing import CliRunner

    from ragtrain.cli import app

    result = CliRunner().invoke(app, ["train", *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


@pytest.mark.parametrize("content, words", [(None, "not found"), ("", "holds no triples"),
                                             ('{"query": "q", "positive": "p"}\n{"query": 1}\n', "t.jsonl:2")])
def test_bad_training_data(tmp_path, tiny_model, content, words):
    path = tmp_path / "t.jsonl"
    if content is not None:
        path.write_text(content)
    assert words in cli_error(["--train-data", str(path), "--model", str(tiny_model), "-o", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("extra, words", [
    (["--batch-size", "1"], "--batch-size must be at least 2"),
    (["--freeze-base"], "--freeze-base trains only the projection head"),
    (["--mixed-precision", "--precision", "fp16", "--device", "cpu"], "fp16 mixed precision is not supported on CPU"),
    (["--model", "no-such-org/no-such-model"], "cannot load model"),
    (["--resume"], "no checkpoint"),
])
def test_bad_options(tmp_path, triples_file, tiny_model, extra, words, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = ["--train-data", str(triples_file), "--model", str(tiny_model), "-o", str(tmp_path / "run"), *extra]
    assert words in cli_error(args)
    assert not (tmp_path / "run").exists()


def test_an_existing_run_needs_resume_or_overwrite(tmp_path, triples_file, tiny_model):
    run = tmp_path / "run"
    run.mkdir()
    saved = json.dumps({"train_data": str(triples_file), "output_dir": str(run)})  # a run's config.json
    (run / "config.json").write_text(saved)
    line = cli_error(["--train-data", str(triples_file), "--model", str(tiny_model), "-o", str(run)])
    assert "--resume" in line and "--overwrite" in line
    assert (run / "config.json").read_text() == saved


def test_resume_drops_a_metrics_line_cut_short_by_a_kill(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in (1, 2, 3, 4)) + '{"step": 5, "lo')
    with train_module._metrics_log(tmp_path, 3) as handle:  # resuming from step 3
        handle.write(json.dumps({"step": 4, "loss": 0.5}) + "\n")
    assert [json.loads(line) for line in path.read_text().splitlines()] == [
        {"step": 1, "loss": 1.0}, {"step": 2, "loss": 1.0}, {"step": 3, "loss": 1.0}, {"step": 4, "loss": 0.5}]
