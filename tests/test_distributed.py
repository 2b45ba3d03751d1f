"""Distributed training: two gloo processes on CPU give the loss and gradients of one process on the
combined batch, with gathered negatives, with GradCache, and without gathering."""

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
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import load_file

from ragtrain import distributed
from ragtrain.data import Triple, collate, tokenize_triples
from ragtrain.distributed import WorldInfo
from ragtrain.gradcache import grad_cache_step
from ragtrain.loss import info_nce
from ragtrain.model import EncoderSpec, load_encoder
from tests.conftest import write_triples

TEMPERATURE = 0.05
# Five triples over two ranks: unequal slices (2 and 3) and unequal hard-negative counts per rank.
TRIPLES = [
    Triple("cat question", "a cat sat on the mat", ("a dog ran in the park", "birds fly south")),
    Triple("oven question", "the oven bakes bread", ()),
    Triple("planet question", "a planet moves in orbit", ("the river flows to the sea",)),
    Triple("code question", "python code runs fast", ("a bike has two wheels", "stars shine", "fish swim")),
    Triple("tree question", "a tree grows tall", ("the city has lanes",)),
]


def test_world_from_env_reads_torchrun_variables(monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.world_from_env() == WorldInfo(rank=3, size=4, local_rank=1)
    monkeypatch.delenv("RANK")
    assert distributed.world_from_env() == WorldInfo()
    assert not WorldInfo().is_distributed and WorldInfo().is_main


@given(st.integers(2, 200), st.integers(1, 8))
def test_shards_cover_the_batch_in_order_with_sizes_within_one(n, size):
    batch = list(range(100, 100 + n))
    shards = [distributed.shard_batch(batch, WorldInfo(rank=r, size=size)) for r in range(size)]
    assert sum(shards, []) == batch
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_batches_too_small_to_split_are_dropped_on_every_rank():
    batches = [[0, 1, 2, 3], [4, 5], [6]]
    assert distributed.usable_batches(batches, WorldInfo(rank=1, size=3)) == [[0, 1, 2, 3]]
    assert distributed.usable_batches(batches, WorldInfo()) == batches
    # With two micro-batches per step, each must still reach every rank: [0, 1] | [2, 3] is fine for 2 ranks.
    assert distributed.usable_batches(batches, WorldInfo(rank=0, size=2), micro_batch_count=2) == [[0, 1, 2, 3]]
    assert distributed.usable_batches(batches, WorldInfo(rank=0, size=3), micro_batch_count=2) == []


def test_loss_scale_undoes_ddp_averaging():
    world = WorldInfo(rank=0, size=4)
    assert distributed.loss_scale(world, 3, 10, gathered=True) == 4.0
    assert distributed.loss_scale(world, 3, 10, gathered=False) == pytest.approx(1.2)
    assert distributed.loss_scale(WorldInfo(), 10, 10, gathered=True) == 1.0


def test_gather_with_grad_is_identity_for_one_process():
    x = torch.randn(3, 4, requires_grad=True)
    assert distributed.gather_with_grad(x, WorldInfo()) is x


def cosine_info_nce(query_emb, doc_emb):
    return info_nce(F.normalize(query_emb, dim=-1), F.normalize(doc_emb, dim=-1), TEMPERATURE)


def _load(model_dir: Path):
    encoder, tokenizer = load_encoder(str(model_dir), EncoderSpec())
    encoder.eval()  # no dropout: one process and two must draw nothing random
    return encoder, tokenizer


def _grads(encoder) -> dict[str, torch.Tensor]:
    return {name: p.grad.detach().clone() for name, p in encoder.named_parameters() if p.grad is not None}


def _reference(model_dir: Path, gathered: bool) -> tuple[float, dict]:
    """One process: the combined batch (gathered) or the share-weighted mean of each rank's own loss."""
    encoder, tokenizer = _load(model_dir)
    data = tokenize_triples(TRIPLES, tokenizer, 64)
    batch = list(range(len(TRIPLES)))
    slices = [batch] if gathered else [distributed.shard_batch(batch, WorldInfo(r, 2)) for r in range(2)]
    total = 0.0
    for part in slices:
        queries, docs = collate(data, part, tokenizer.pad_token_id)
        loss = cosine_info_nce(encoder.embed(**queries), encoder.embed(**docs)) * len(part) / len(batch)
        loss.backward()
        total += loss.item()
    return total, _grads(encoder)


def _worker(rank: int, model_dir: str, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    world = distributed.world_from_env()
    device = torch.device("cpu")
    distributed.setup(world, device)
    results = {}
    for name, gathered, mini_batch in (("gathered", True, None), ("cached", True, 1), ("local", False, None)):
        encoder, tokenizer = _load(Path(model_dir))
        model = distributed.wrap_model(encoder, world, device)
        data = tokenize_triples(TRIPLES, tokenizer, 64)
        batch = list(range(len(TRIPLES)))
        shard = distributed.shard_batch(batch, world)
        queries, docs = collate(data, shard, tokenizer.pad_token_id)
        scale = distributed.loss_scale(world, len(shard), len(batch), gathered)

        def loss_fn(query_emb, doc_emb):
            if gathered:
                query_emb, doc_emb = distributed.gather_embeddings(query_emb, doc_emb, world)
            loss = cosine_info_nce(query_emb, doc_emb)
            return loss, loss.item()

        def backward(loss):
            (loss * scale).backward()

        if mini_batch:
            loss = grad_cache_step(model, queries, docs, loss_fn, mini_batch, backward)
        else:
            loss_tensor, loss = loss_fn(model(**queries), model(**docs))
            backward(loss_tensor)
        # The logged loss: global already when gathered, else each rank's share-weighted part summed.
        logged = loss if gathered else distributed.mean_over_ranks(loss * scale, world, device)
        results[name] = (logged, _grads(encoder))
    torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    distributed.cleanup(world)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def two_rank_results(tiny_model, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(str(tiny_model), _free_port(), str(out_dir)), nprocs=2, join=True)
    return [torch.load(out_dir / f"rank{r}.pt") for r in range(2)]


@pytest.mark.parametrize("run", ["gathered", "cached", "local"])
def test_two_ranks_match_one_process(run, two_rank_results, tiny_model):
    ref_loss, ref_grads = _reference(tiny_model, gathered=run != "local")
    for rank_results in two_rank_results:
        loss, grads = rank_results[run]
        assert loss == pytest.approx(ref_loss, abs=1e-5)
        assert grads.keys() == ref_grads.keys()
        for name, grad in grads.items():
            torch.testing.assert_close(grad, ref_grads[name], atol=1e-5, rtol=0, msg=name)


def test_gathered_loss_differs_from_local_loss(two_rank_results):
    """Guards the test above: gathering must add the other rank's negatives, not leave the loss as it was."""
    assert two_rank_results[0]["gathered"][0] != pytest.approx(two_rank_results[0]["local"][0], abs=1e-3)


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "ragtrain", "train", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_torchrun_trains_writes_once_and_resumes_to_the_same_model(tmp_path, tiny_model):
    """Two CPU processes: rank 0 alone writes; resuming from a mid-run checkpoint ends at the same weights."""
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model, model_dir)
    config = json.loads((model_dir / "config.json").read_text())  # no dropout: both runs draw nothing random
    (model_dir / "config.json").write_text(json.dumps(config | {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}))
    triples = write_triples(tmp_path / "train.jsonl", count=20, negatives=1)
    run_dir = tmp_path / "run"
    common = ["--train-data", str(triples), "--model", str(model_dir), "--output-dir", str(run_dir), "--batch-size", "6",
              "--max-seq-length", "32", "--epochs", "2", "--device", "cpu", "--save-steps", "2", "--keep-last", "10",
              "--log-steps", "1", "--grad-cache", "--mini-batch-size", "2"]
    out = _torchrun(*common)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("trained model saved") == 2  # each rank returns; only rank 0 printed the table
    assert out.stderr.count("device: cpu x 2 processes") == 1
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, len(rows) + 1))  # one writer: no line twice
    assert not (run_dir / "ragtrain.lock").exists()  # taken by process 0 alone (a second taker would have failed)
    uninterrupted = load_file(run_dir / "final" / "model.safetensors")
    out = _torchrun(*common, "--resume-from", str(run_dir / "checkpoints" / "step-2"))
    assert out.returncode == 0, out.stderr[-3000:]
    resumed = load_file(run_dir / "final" / "model.safetensors")
    for name, weight in uninterrupted.items():
        torch.testing.assert_close(resumed[name], weight, atol=1e-6, rtol=0, msg=name)
