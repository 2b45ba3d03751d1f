"""Averaging weights: the weighted mean of state dicts, and train --average-last."""

from __future__ import annotations

import torch
from safetensors.torch import load_file

from ragtrain.config.train import TrainConfig
from ragtrain.model.merging import average_state_dicts
from tests.conftest import quiet_console, user_error, write_triples


def test_average_state_dicts_by_hand():
    states = [{"w": torch.tensor([1.0, 2.0]), "ids": torch.tensor([0, 1])},
              {"w": torch.tensor([3.0, 6.0]), "ids": torch.tensor([5, 5])}]
    merged = average_state_dicts(states, [0.25, 0.75])
    assert torch.equal(merged["w"], torch.tensor([2.5, 5.0])) and merged["w"].dtype == torch.float32
    assert torch.equal(merged["ids"], torch.tensor([0, 1]))  # integer buffers are the first model's


def test_train_average_last_writes_the_mean_of_the_last_checkpoints(tmp_path, tiny_model, monkeypatch):

    from ragtrain.commands import train as train_command
    from ragtrain.training import finish

    monkeypatch.setattr(finish, "Console", quiet_console)
    triples = write_triples(tmp_path / "train.jsonl", 16)
    config = TrainConfig(train_data=triples, model=str(tiny_model), output_dir=tmp_path / "run", batch_size=4,
                         max_seq_length=32, device="cpu", epochs=1, learning_rate=1e-3, save_steps=2, keep_last=2,
                         average_last=2)
    train_command.train(config)
    run = tmp_path / "run"
    # 4 steps, checkpoints at 2 and 4 (the final weights): averaged/ is their mean
    step2 = load_file(str(run / "checkpoints" / "step-2" / "model" / "model.safetensors"))
    final = load_file(str(run / "final" / "model.safetensors"))
    averaged = load_file(str(run / "averaged" / "model.safetensors"))
    changed = 0
    for name, value in averaged.items():
        expected = ((step2[name].double() + final[name].double()) / 2).to(value.dtype)
        torch.testing.assert_close(value, expected)
        changed += not torch.equal(step2[name], final[name])
    assert changed > 0  # the two differ, so the mean is neither


def test_average_last_beyond_keep_last_is_one_line(tmp_path, tiny_model):
    triples = write_triples(tmp_path / "train.jsonl", 8)
    line = user_error(["train", "--train-data", str(triples), "--model", str(tiny_model), "-o", str(tmp_path / "r"),
                       "--average-last", "3", "--keep-last", "2"])
    assert "--average-last 3 averages checkpoints that --keep-last 2 deletes" in line
