"""Checkpoints: pruning, finding the latest, RNG round trip (every rank its own), and resuming with changed options."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ragtrain.cli import app
from ragtrain.config.common import as_dict
from ragtrain.config.train import TrainConfig
from ragtrain.errors import UserError
from ragtrain.model.loading import load_encoder
from ragtrain.model.settings import TextOptions
from ragtrain.training.checkpoint import (
    CHECKPOINT_FILES,
    Checkpoint,
    TrainState,
    find_checkpoint,
    last_checkpoint_note,
    missing_files,
    prune_checkpoints,
    reconcile_config,
    recover_checkpoints,
    restore_training,
    rng_states,
    set_rng_states,
)
from tests.conftest import write_triples


def make_steps(run, steps):
    """Checkpoint folders holding every file a complete one has (empty: these tests never load them)."""
    for step in steps:
        for name in (*CHECKPOINT_FILES, "model/model.safetensors"):
            path = run / "checkpoints" / f"step-{step}" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("{}")


def test_keep_last_plus_the_best(tmp_path):
    make_steps(tmp_path, [2, 4, 6, 8, 10])
    prune_checkpoints(tmp_path, keep_last=2, best_step=4)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-10", "step-4", "step-8"]


def test_latest_is_the_highest_step_not_the_last_name(tmp_path):
    make_steps(tmp_path, [9, 10, 100])
    assert find_checkpoint(tmp_path, "latest").name == "step-100"
    assert find_checkpoint(tmp_path, str(tmp_path / "checkpoints" / "step-9")).name == "step-9"
    with pytest.raises(UserError, match="not a checkpoint"):
        find_checkpoint(tmp_path, str(tmp_path))
    with pytest.raises(UserError, match="no checkpoint"):
        find_checkpoint(tmp_path / "empty", "latest")


def test_rng_states_round_trip(tmp_path):
    torch.save(rng_states(), tmp_path / "rng.pt")
    expected = (torch.rand(3), random.random(), np.random.rand())
    set_rng_states(torch.load(tmp_path / "rng.pt", weights_only=True))
    set_rng_states(torch.load(tmp_path / "rng.pt", weights_only=True))
    got = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(got[0], expected[0]) and got[1:] == expected[1:]


def test_reconcile_keeps_trajectory_options_and_takes_harmless_ones(tmp_path):
    saved = as_dict(TrainConfig(train_data=tmp_path / "t.jsonl", batch_size=16, eval_steps=5))
    new = TrainConfig(train_data=tmp_path / "t.jsonl", batch_size=32, eval_steps=10, resume="latest")
    config, warnings = reconcile_config(new, saved)
    assert config.batch_size == 16 and config.eval_steps == 10 and config.resume == "latest"
    assert len(warnings) == 2
    assert any("--batch-size 32" in w and "keeping the checkpoint's 16" in w for w in warnings)
    assert any("--eval-steps" in w and "using 10" in w for w in warnings)


def test_resume_never_picks_a_half_deleted_checkpoint(tmp_path):
    """What an older ragtrain left when killed while re-saving step-6 (it deleted the old copy first)."""
    make_steps(tmp_path, [3, 6])
    (tmp_path / "checkpoints" / "step-6" / "optimizer.pt").unlink()
    assert missing_files(tmp_path / "checkpoints" / "step-6") == ["optimizer.pt"]
    assert find_checkpoint(tmp_path, "latest").name == "step-3"
    with pytest.raises(UserError, match="incomplete checkpoint \\(no optimizer.pt\\)"):
        find_checkpoint(tmp_path, str(tmp_path / "checkpoints" / "step-6"))
    notes = recover_checkpoints(tmp_path)
    assert len(notes) == 1 and "removed the incomplete checkpoint" in notes[0]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-3"]


def test_pruning_and_recovery_leave_other_names_alone(tmp_path):
    make_steps(tmp_path, [2, 4, 6])
    folder = tmp_path / "checkpoints"
    (folder / ".step-8.abcd1234.tmp").mkdir()  # a half-written step-8 of a killed run
    (folder / "notes.txt").write_text("mine")
    (folder / "step-x").mkdir()
    recover_checkpoints(tmp_path)
    prune_checkpoints(tmp_path, keep_last=1, best_step=None)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt", "step-6", "step-x"]


def rank_checkpoint(tmp_path, encoder, ranks: list[dict] | dict):
    """A checkpoint directory holding an optimizer, a scaler and the given RNG file content."""
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=1e-3)
    path = tmp_path / "step-1"
    path.mkdir()
    torch.save(optimizer.state_dict(), path / "optimizer.pt")
    torch.save(torch.amp.GradScaler("cpu", enabled=False).state_dict(), path / "scaler.pt")
    torch.save(ranks, path / "rng.pt")
    return Checkpoint(path, TrainState(step=1), {})


def test_each_rank_restores_its_own_rng_state(tmp_path, tiny_model):
    encoder = load_encoder(str(tiny_model), TextOptions())
    torch.manual_seed(1)
    first = rng_states()
    torch.rand(5)
    second = rng_states()  # rank 1 had drawn more: its dropout masks differ from rank 0's
    after_second = torch.rand(3)
    checkpoint = rank_checkpoint(tmp_path, encoder, {"ranks": [first, second]})
    optimizer, scaler = torch.optim.AdamW(encoder.parameters(), lr=1e-3), torch.amp.GradScaler("cpu", enabled=False)
    torch.manual_seed(99)
    assert restore_training(checkpoint, optimizer, scaler, torch.device("cpu"), rank=1) == 2
    assert torch.equal(torch.rand(3), after_second)
    torch.manual_seed(99)
    expected = torch.rand(3)
    torch.manual_seed(99)
    assert restore_training(checkpoint, optimizer, scaler, torch.device("cpu"), rank=2) == 2  # a rank it lacks
    assert torch.equal(torch.rand(3), expected)  # keeps its own, freshly seeded generator


def test_a_checkpoint_from_before_per_rank_states_is_rank_0s(tmp_path, tiny_model):
    encoder = load_encoder(str(tiny_model), TextOptions())
    torch.manual_seed(3)
    old = rng_states()
    old.pop("device_type"), old.pop("device")
    old["cuda"] = []  # the layout of e2a5825's rng.pt
    expected = torch.rand(2)
    checkpoint = rank_checkpoint(tmp_path, encoder, old)
    torch.manual_seed(5)
    optimizer, scaler = torch.optim.AdamW(encoder.parameters(), lr=1e-3), torch.amp.GradScaler("cpu", enabled=False)
    assert restore_training(checkpoint, optimizer, scaler, torch.device("cpu")) == 1
    assert torch.equal(torch.rand(2), expected)


def test_an_optimizer_state_that_does_not_fit_is_a_user_error(tmp_path, tiny_model):
    saved_with_head = load_encoder(str(tiny_model), TextOptions(output_dim=8))
    checkpoint = rank_checkpoint(tmp_path, saved_with_head, {"ranks": [rng_states()]})
    encoder = load_encoder(str(tiny_model), TextOptions())
    optimizer, scaler = torch.optim.AdamW(encoder.parameters(), lr=1e-3), torch.amp.GradScaler("cpu", enabled=False)
    with pytest.raises(UserError, match="does not fit this model's optimizer"):
        restore_training(checkpoint, optimizer, scaler, torch.device("cpu"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_rng_states_keep_the_cuda_generator_of_the_device_in_use(tmp_path):
    device = torch.device("cuda", torch.cuda.current_device())
    torch.save(rng_states(device), tmp_path / "rng.pt")
    expected = torch.rand(4, device=device)  # e.g. a dropout mask drawn on the GPU
    torch.cuda.manual_seed(1234)
    set_rng_states(torch.load(tmp_path / "rng.pt", weights_only=True), device)
    assert torch.equal(torch.rand(4, device=device), expected)


def test_the_note_names_the_checkpoint_a_stopped_run_leaves(tmp_path):
    assert last_checkpoint_note(tmp_path) == "no checkpoint was saved"
    make_steps(tmp_path, [2, 10, 4])
    assert last_checkpoint_note(tmp_path) == f"the last good checkpoint is kept: {tmp_path / 'checkpoints' / 'step-10'}"


@pytest.mark.parametrize("content", [b"not a torch file", "pickle"])
def test_a_checkpoint_file_torch_will_not_load_safely_is_one_line(tmp_path, tiny_model, content):
    """A pickle of other objects in optimizer.pt printed torch's page of weights-only advice; a damaged one a
    traceback. Resuming from either is one line naming the file."""
    run = tmp_path / "run"
    args = ["train", "--train-data", str(write_triples(tmp_path / "t.jsonl", count=8)), "--model", str(tiny_model),
            "-o", str(run), "--batch-size", "4", "--max-seq-length", "32", "--device", "cpu", "--learning-rate", "1e-4"]
    assert CliRunner().invoke(app, args).exit_code == 0
    optimizer = run / "checkpoints" / "step-2" / "optimizer.pt"
    if content == "pickle":
        torch.save({"state": {}, "note": Path("an object torch's weights-only loader refuses")}, optimizer)
    else:
        optimizer.write_bytes(content)
    result = CliRunner().invoke(app, [*args, "--resume-from", str(optimizer.parent)])
    assert result.exit_code == 2 and "Traceback" not in result.output and "weights_only" not in result.output
    (line,) = [line for line in result.output.splitlines() if "error" in line]  # after the resume's progress lines
    assert f"checkpoint file {optimizer} cannot be loaded safely" in line
