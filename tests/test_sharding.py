"""Corpus-wide encoding across processes (torchrun): each rank encodes its slice, every rank gets every row, rank 0
writes the cache entry and the results; two gloo CPU processes give one process's figures within 1e-6, and the
same prepare-data output with the dense miner and the hybrid teacher."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from ragtrain.commands.evaluate import evaluate
from ragtrain.commands.prepare import prepare
from ragtrain.model import world as world_module
from ragtrain.model.world import WorldInfo, gather_rows, join_process_group, leave_process_group, world_from_env
from ragtrain.retrieval import embedding
from tests.conftest import evaluate_config, file_bytes, prepare_config, quiet_console, write_documents

WORDS = "cat tree bread oven yeast planet orbit sun python code cache memory fish river water bike chain".split()


def write_eval_set(directory: Path, documents: int = 37, queries: int = 11) -> Path:
    """An odd number of documents and queries, so that two ranks' slices differ in size."""
    rng = np.random.default_rng(0)
    (directory / "qrels").mkdir(parents=True)
    docs = [{"_id": f"d{i}", "title": "", "text": " ".join(rng.choice(WORDS, 8))} for i in range(documents)]
    rows = [{"_id": f"q{i}", "text": " ".join(rng.choice(WORDS, 3))} for i in range(queries)]
    (directory / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (directory / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in rows))
    (directory / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"q{i}\td{(3 * i) % documents}\t1\n" for i in range(queries)))
    return directory


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _join(rank: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)


def _gather_worker(rank: int, port: int, out_dir: str) -> None:
    _join(rank, port)
    world = world_from_env()
    join_process_group(world, torch.device("cpu"))
    world_module.GATHER_BYTES = 20  # a few rows at a time: the pieces and the padding of the shorter slice are used
    rows = np.arange(7 * 3, dtype=np.float16).reshape(7, 3)
    start, end = world.slice(7)
    out = np.zeros_like(rows)
    gather_rows(rows[start:end], out, world)
    np.save(Path(out_dir) / f"rank{rank}.npy", out)
    leave_process_group(world)


def _evaluate_worker(rank: int, port: int, eval_dir: str, model: str, cache_dir: str, out_dir: str) -> None:
    _join(rank, port)
    encoded = []  # how many passages this rank encodes
    real = embedding.encode_documents
    embedding.encode_documents = lambda encoder, texts, *args, **kwargs: encoded.append(len(texts)) or real(
        encoder, texts, *args, **kwargs)
    config = evaluate_config(Path(eval_dir), Path(cache_dir), model, f"hybrid:{model}", "bm25", precision="fp32")
    results = evaluate(config, console=quiet_console())
    (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps({"results": results, "encoded": encoded}))


def _prepare_worker(rank: int, port: int, docs: str, model: str, out: str) -> None:
    _join(rank, port)
    prepare(prepare_config([Path(docs)], Path(out), miner="dense", model=model, teacher="hybrid", negatives=2))


def _spawn(worker, *args) -> None:
    mp.spawn(worker, args=(_free_port(), *args), nprocs=2, join=True)


@pytest.mark.slow  # starts processes
def test_two_ranks_gather_every_rank_s_rows_in_order(tmp_path):
    _spawn(_gather_worker, str(tmp_path))
    expected = np.arange(21, dtype=np.float16).reshape(7, 3)
    for rank in range(2):
        np.testing.assert_array_equal(np.load(tmp_path / f"rank{rank}.npy"), expected)


def test_slices_cover_the_rows_in_order_and_differ_by_one_at_most():
    for count in (0, 1, 7, 100):
        for size in (1, 2, 3, 8):
            slices = [WorldInfo(rank, size).slice(count) for rank in range(size)]
            assert slices[0][0] == 0 and slices[-1][1] == count
            assert all(a[1] == b[0] for a, b in zip(slices, slices[1:]))
            assert max(e - s for s, e in slices) - min(e - s for s, e in slices) <= 1


@pytest.mark.slow  # starts processes
def test_two_ranks_evaluate_as_one_process_does_and_rank_0_alone_writes(tmp_path, tiny_model):
    eval_dir = write_eval_set(tmp_path / "eval")
    model = str(tiny_model)
    single = evaluate(evaluate_config(eval_dir, tmp_path / "single", model, f"hybrid:{model}", "bm25", precision="fp32"),
                      console=quiet_console())
    _spawn(_evaluate_worker, str(eval_dir), model, str(tmp_path / "two"), str(tmp_path))
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    assert [r["encoded"] for r in ranks] == [[18], [19]]  # each rank its slice of 37 passages, once: then cached
    assert ranks[1]["results"] == {}  # only rank 0 searches and reports
    two = ranks[0]["results"]
    for name, row in single["models"].items():
        for metric, value in row["metrics"].items():
            assert two["models"][name]["metrics"][metric] == pytest.approx(value, abs=1e-6), (name, metric)
        for query, figures in row["per_query"].items():
            assert two["models"][name]["per_query"][query] == pytest.approx(figures, abs=1e-6)
    assert two["models"][model]["cache"] == "miss"
    entries = sorted((tmp_path / "two" / "cache").glob("*.npy"))  # rank 0 wrote each part once: corpus and queries
    assert len(entries) == 2 and not list((tmp_path / "two" / "cache").glob(".*"))
    single_entries = {np.load(p).shape: np.load(p) for p in (tmp_path / "single" / "cache").glob("*.npy")}
    for entry in entries:
        np.testing.assert_allclose(np.load(entry), single_entries[np.load(entry).shape], atol=1e-6, rtol=0)
    again = evaluate(evaluate_config(eval_dir, tmp_path / "two", model, precision="fp32"), console=quiet_console())
    assert again["models"][model]["cache"] == "hit"  # the entry the two ranks made serves one process


@pytest.mark.slow  # starts processes
def test_two_ranks_prepare_the_dense_miner_s_and_hybrid_teacher_s_output_of_one_process(tmp_path, tiny_model):
    docs = write_documents(tmp_path / "docs")
    prepare(prepare_config([docs], tmp_path / "single", miner="dense", model=str(tiny_model), teacher="hybrid",
                           negatives=2))
    _spawn(_prepare_worker, str(docs), str(tiny_model), str(tmp_path / "two"))
    single, two = file_bytes(tmp_path / "single"), file_bytes(tmp_path / "two")
    assert single.keys() == two.keys() and not list(tmp_path.glob(".two*"))  # rank 0's folder alone, nothing else
    assert {k: v for k, v in two.items() if k.startswith("eval/")} == {k: v for k, v in single.items() if k.startswith("eval/")}
    manifests = [json.loads(files["manifest.json"]) for files in (single, two)]
    assert manifests[0]["counts"] == manifests[1]["counts"]  # the same mining: every filter counted alike
    for name in ("train.jsonl", "val.jsonl"):
        ours = [json.loads(line) for line in two[name].decode().splitlines()]
        theirs = [json.loads(line) for line in single[name].decode().splitlines()]
        assert [{k: v for k, v in r.items() if k != "scores"} for r in ours] == \
            [{k: v for k, v in r.items() if k != "scores"} for r in theirs]
        for a, b in zip(ours, theirs):
            # z-scores: a difference of 1e-7 in an embedding, over a standard deviation of the scores near 0.01
            assert a["scores"] == pytest.approx(b["scores"], abs=1e-4)


@pytest.mark.slow  # starts torchrun
def test_torchrun_evaluate_writes_one_result_file_equal_to_one_process_s(tmp_path, tiny_model):
    eval_dir = write_eval_set(tmp_path / "eval")
    common = [str(tiny_model), "--eval-data", str(eval_dir), "--device", "cpu", "--precision", "fp32", "--k", "1,10"]
    single = subprocess.run([sys.executable, "-m", "ragtrain", "evaluate", *common, "--no-cache", "--output",
                             str(tmp_path / "one.json")], capture_output=True, text=True, timeout=300,
                            env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert single.returncode == 0, single.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "ragtrain", "evaluate", *common, "--cache-dir", str(tmp_path / "cache"), "--output",
                          str(tmp_path / "two.json")], capture_output=True, text=True, timeout=300,
                         env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("ndcg@10") == 1  # one table: rank 0's
    one, both = (json.loads((tmp_path / name).read_text())["models"][str(tiny_model)]["metrics"]
                 for name in ("one.json", "two.json"))
    assert both == pytest.approx(one, abs=1e-6)
