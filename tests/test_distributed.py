"""Distributed training: two gloo processes on CPU, each through `train_step`, give the loss and gradients of one
process on the combined batch (gathered negatives, GradCache, accumulation, repeated passages masked across ranks,
a rank with nothing to do), or of each rank's share (without gathering); torchrun runs resume exactly."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import load_file

from ragtrain.commands.train import train
from ragtrain.config.train import TrainConfig
from ragtrain.data.triples import Triple, false_negative_mask, tokenize_triples
from ragtrain.model.loading import load_encoder
from ragtrain.model.runtime import Runtime
from ragtrain.model.settings import TextOptions
from ragtrain.model.world import WorldInfo, join_process_group, leave_process_group, world_from_env
from ragtrain.training import distributed
from ragtrain.training.step import loss_options, step_batches, train_step
from tests.conftest import gradients, write_triples

TEMPERATURE = 0.05
# Five triples over two ranks: unequal slices (2 and 3), unequal hard-negative counts per rank, and one passage
# three times across both ranks: triple 0's positive, triple 2's negative, triple 4's positive (other spacing).
TRIPLES = [
    Triple("cat question", "a cat sat on the mat", ("a dog ran in the park", "birds fly south")),
    Triple("oven question", "the oven bakes bread", ()),
    Triple("planet question", "a planet moves in orbit", ("a cat sat on the mat",)),
    Triple("code question", "python code runs fast", ("a bike has two wheels", "stars shine", "fish swim")),
    Triple("mat question", "a  cat sat on the  mat", ("the city has lanes",)),
]
# name -> (triples of the global batch, options): each runs on two ranks and in one process
CASES = {
    "gathered": ([0, 1, 2, 3, 4], {}),
    "cached": ([0, 1, 2, 3, 4], {"grad_cache": True, "mini_batch_size": 1}),
    "accumulated": ([0, 1, 2, 3, 4], {"grad_accum_steps": 2}),
    "local": ([0, 1, 2, 3, 4], {"gather_negatives": False}),
    "one-triple": ([3], {}),  # rank 0's slice is empty
    "one-triple-cached": ([3], {"grad_cache": True, "mini_batch_size": 1}),
    "one-triple-local": ([3], {"gather_negatives": False}),
}


def test_world_from_env_reads_torchrun_variables(monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert world_from_env() == WorldInfo(rank=3, size=4, local_rank=1)
    monkeypatch.delenv("RANK")
    assert world_from_env() == WorldInfo()
    assert not WorldInfo().is_distributed and WorldInfo().is_main


@given(st.integers(1, 200), st.integers(1, 8))
def test_shards_cover_the_batch_in_order_with_sizes_within_one(n, size):
    batch = list(range(100, 100 + n))
    shards = [distributed.shard_batch(batch, WorldInfo(rank=r, size=size)) for r in range(size)]
    assert sum(shards, []) == batch
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def step_config(**options) -> TrainConfig:
    return TrainConfig(train_data=Path("unused.jsonl"), temperature=TEMPERATURE, max_grad_norm=0.0, **options)


def test_every_rank_gets_its_slice_and_the_whole_micro_batchs_mask(tiny_model):
    """No triple is dropped: a rank with an empty slice gets a stand-in row it never scores. With gathered
    negatives each rank masks over the global layout [all positives, all negatives], which is one process's."""
    data = tokenize_triples(TRIPLES, load_encoder(str(tiny_model), TextOptions(max_length=64)))
    whole = false_negative_mask(data, [0, 1, 2, 3, 4])
    assert int(whole.sum()) == 4  # query 0: columns 4 (positive) and 7 (2's negative); query 4: columns 0 and 7
    for rank, rows in ((0, 2), (1, 3)):
        (batch,) = step_batches(data, [0, 1, 2, 3, 4], step_config(), WorldInfo(rank, 2), 0)
        assert batch.rows == rows and batch.global_size == 5 and torch.equal(batch.mask, whole) and batch.masked == 4
        (local,) = step_batches(data, [0, 1, 2, 3, 4], step_config(gather_negatives=False), WorldInfo(rank, 2), 0)
        assert local.mask.shape == (rows, rows + [2, 5][rank]) and local.masked == 1  # triple 4 meets 2's negative
    empty, full = (step_batches(data, [3], step_config(), WorldInfo(rank, 2), 0)[0] for rank in (0, 1))
    assert (empty.rows, full.rows) == (0, 1) and empty.queries["input_ids"].size(0) == 1  # the stand-in row
    assert torch.equal(empty.mask, full.mask) and empty.mask.shape == (1, 4)
    halves = step_batches(data, [0, 1, 2, 3, 4], step_config(grad_accum_steps=2), WorldInfo(1, 2), 0)
    assert [(b.rows, b.global_size) for b in halves] == [(2, 3), (1, 2)]


def test_loss_scale_undoes_ddp_averaging():
    world = WorldInfo(rank=0, size=4)
    assert distributed.loss_scale(world, 3, 10, gathered=True) == 4.0
    assert distributed.loss_scale(world, 3, 10, gathered=False) == pytest.approx(1.2)
    assert distributed.loss_scale(WorldInfo(), 10, 10, gathered=True) == 1.0


def test_gather_with_grad_is_identity_for_one_process():
    x = torch.randn(3, 4, requires_grad=True)
    assert distributed.gather_with_grad(x, WorldInfo()) is x


def _load(model_dir: Path):
    encoder = load_encoder(str(model_dir), TextOptions(max_length=64))
    encoder.eval()  # no dropout: one process and two must draw nothing random
    return encoder


def _step(model, encoder, data, batch: list[int], options: dict, world: WorldInfo) -> tuple[float, dict, int]:
    """train_step on this process's view of the global batch: (logged loss, gradients, masked candidates)."""
    cfg = step_config(**options)
    optimizer = torch.optim.SGD([p for p in encoder.parameters() if p.requires_grad], lr=0.0)  # the gradient stays
    parts = step_batches(data, batch, cfg, world, 0)
    runtime = Runtime(torch.device("cpu"))
    result = train_step(model, optimizer, runtime.grad_scaler(), parts, cfg, runtime, loss_options(cfg, encoder.settings),
                        None, world)
    return result.parts["loss"], gradients(encoder), result.masked


def _reference(model_dir: Path, name: str) -> tuple[float, dict, int]:
    """One process: the whole batch, or (without gathering) each rank's slice weighted by its share."""
    batch, options = CASES[name]
    encoder = _load(model_dir)
    data = tokenize_triples(TRIPLES, encoder)
    if options.get("gather_negatives", True):
        return _step(encoder, encoder, data, batch, options, WorldInfo())
    total, grads, masked = 0.0, {}, 0
    for rank in range(2):
        shard = distributed.shard_batch(batch, WorldInfo(rank, 2))
        if not shard:
            continue
        loss, shard_grads, shard_masked = _step(encoder, encoder, data, shard, options, WorldInfo())
        total, masked = total + loss * len(shard) / len(batch), masked + shard_masked
        for key, grad in shard_grads.items():
            grads[key] = grads.get(key, 0) + grad * len(shard) / len(batch)
    return total, grads, masked


def _worker(rank: int, model_dir: str, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    world = world_from_env()
    device = torch.device("cpu")
    join_process_group(world, device)
    results = {}
    for name, (batch, options) in CASES.items():
        encoder = _load(Path(model_dir))
        model = distributed.wrap_model(encoder, world, device)
        results[name] = _step(model, encoder, tokenize_triples(TRIPLES, encoder), batch, options, world)
    torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    leave_process_group(world)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def two_rank_results(tiny_model, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(str(tiny_model), _free_port(), str(out_dir)), nprocs=2, join=True)
    return [torch.load(out_dir / f"rank{r}.pt") for r in range(2)]


@pytest.mark.slow
@pytest.mark.parametrize("run", list(CASES))
def test_two_ranks_match_one_process(run, two_rank_results, tiny_model):
    ref_loss, ref_grads, ref_masked = _reference(tiny_model, run)
    for rank_results in two_rank_results:
        loss, grads, masked = rank_results[run]
        assert loss == pytest.approx(ref_loss, abs=1e-5)
        assert masked == ref_masked
        assert grads.keys() == ref_grads.keys() and len(grads) > 0
        for name, grad in grads.items():
            torch.testing.assert_close(grad, ref_grads[name], atol=1e-5, rtol=0, msg=name)


@pytest.mark.slow
def test_gathered_loss_differs_from_local_loss_and_masks_across_ranks(two_rank_results):
    """Guards the test above: gathering adds the other rank's negatives, and masks the passage it shares."""
    results = two_rank_results[0]
    assert results["gathered"][0] != pytest.approx(results["local"][0], abs=1e-3)
    assert (results["gathered"][2], results["local"][2]) == (4, 1)


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "ragtrain", "train", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def _copy_model(tiny_model: Path, target: Path, dropout: float) -> Path:
    shutil.copytree(tiny_model, target)
    config = json.loads((target / "config.json").read_text())
    (target / "config.json").write_text(json.dumps(config | {"hidden_dropout_prob": dropout}))
    return target


@pytest.mark.slow
@pytest.mark.parametrize("memory_saver", [["--grad-accum-steps", "2"], ["--grad-cache", "--mini-batch-size", "2"]],
                         ids=["accumulation", "grad-cache"])
def test_torchrun_trains_writes_once_and_resumes_to_the_same_model_with_dropout(tmp_path, tiny_model, memory_saver):
    """Two CPU processes with dropout on (each rank draws its own masks): rank 0 alone writes, no triple is
    dropped, and resuming mid-epoch from a checkpoint ends at the uninterrupted run's weights."""
    model_dir = _copy_model(tiny_model, tmp_path / "model", dropout=0.1)
    triples = write_triples(tmp_path / "train.jsonl", count=20, negatives=1)
    run_dir = tmp_path / "run"
    common = ["--train-data", str(triples), "--model", str(model_dir), "--output-dir", str(run_dir), "--batch-size", "6",
              "--max-seq-length", "32", "--epochs", "2", "--device", "cpu", "--save-steps", "2", "--keep-last", "10",
              "--log-steps", "1", *memory_saver]
    out = _torchrun(*common)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("trained model saved") == 2  # each rank returns; only rank 0 printed the table
    assert out.stderr.count("device: cpu x 2 processes") == 1
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 9))  # one writer: no line twice; ceil(20 / 6) = 4 steps an epoch
    assert [sorted(r["batch_size"] for r in rows[e * 4 : e * 4 + 4]) for e in range(2)] == [[2, 6, 6, 6]] * 2
    assert not (run_dir / "ragtrain.lock").exists()  # taken by process 0 alone (a second taker would have failed)
    uninterrupted = load_file(run_dir / "final" / "model.safetensors")
    out = _torchrun(*common, "--resume-from", str(run_dir / "checkpoints" / "step-2"))  # mid-way through epoch 1
    assert out.returncode == 0, out.stderr[-3000:]
    assert "written by" not in out.stderr  # the same number of processes: no warning
    resumed = load_file(run_dir / "final" / "model.safetensors")
    for name, weight in uninterrupted.items():
        torch.testing.assert_close(resumed[name], weight, atol=1e-6, rtol=0, msg=name)


@pytest.mark.slow
def test_resuming_with_another_number_of_processes_carries_on(tmp_path, tiny_model):
    """A one-process checkpoint resumed by two processes, and theirs by one again: a warning each time, and
    (no dropout, gathered negatives) the weights of the uninterrupted one-process run, to float rounding."""
    model_dir = _copy_model(tiny_model, tmp_path / "model", dropout=0.0)
    triples = write_triples(tmp_path / "train.jsonl", count=20, negatives=1)
    run_dir = tmp_path / "run"
    options = dict(train_data=triples, model=str(model_dir), output_dir=run_dir, batch_size=6, max_seq_length=32,
                   epochs=2, device="cpu", save_steps=2, keep_last=10, learning_rate=1e-3)
    uninterrupted = load_file(train(TrainConfig(**options)) / "model.safetensors")
    out = _torchrun("--train-data", str(triples), "--model", str(model_dir), "--output-dir", str(run_dir),
                    "--batch-size", "6", "--max-seq-length", "32", "--epochs", "2", "--device", "cpu",
                    "--save-steps", "2", "--keep-last", "10", "--learning-rate", "1e-3",
                    "--resume-from", str(run_dir / "checkpoints" / "step-2"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stderr.count("the checkpoint was written by 1 process(es) and this run has 2") == 1
    resumed = load_file(run_dir / "final" / "model.safetensors")
    for name, weight in uninterrupted.items():
        torch.testing.assert_close(resumed[name], weight, atol=2e-5, rtol=0, msg=name)
    again = train(TrainConfig(**options, resume=str(run_dir / "checkpoints" / "step-4")))  # written by two processes
    for name, weight in load_file(again / "model.safetensors").items():
        torch.testing.assert_close(weight, uninterrupted[name], atol=2e-5, rtol=0, msg=name)
