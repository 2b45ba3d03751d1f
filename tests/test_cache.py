"""The embedding cache: a hit encodes nothing, the key follows model, texts and settings, a damaged entry is
encoded again, an unwritable cache only warns, and hub names are keyed by revision."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import ragtrain.retrieval.embedding as embedding
from ragtrain.cli import app
from ragtrain.commands.evaluate import evaluate
from ragtrain.files.atomic import file_sha256
from ragtrain.model.encoding import encode_documents
from ragtrain.model.loading import load_encoder
from ragtrain.model.runtime import Runtime
from ragtrain.model.saving import save_encoder
from ragtrain.retrieval.cache import (
    EmbeddingCache,
    cache_key,
    cached_or_encoded,
    load_cached,
    model_fingerprint,
    new_entry,
    store_cached,
    texts_fingerprint,
)
from tests.conftest import DOCS, build_tiny_model, evaluate_config, fake_hub_snapshot, quiet_console

runner = CliRunner()


def test_cache_hit_skips_encoding_and_key_follows_corpus_and_model(beir, tmp_path, tiny_model, monkeypatch):
    calls = []
    for side in ("encode_queries", "encode_documents"):  # every encoding evaluate does, by the part it names
        monkeypatch.setattr(embedding, side, lambda *a, real=getattr(embedding, side), **k: calls.append(a[4]) or real(*a, **k))
    first = evaluate(evaluate_config(beir, tmp_path, str(tiny_model)), console=quiet_console())["models"][str(tiny_model)]
    assert calls == ["corpus", "queries"] and first["cache"] == "miss"
    second = evaluate(evaluate_config(beir, tmp_path, str(tiny_model)), console=quiet_console())["models"][str(tiny_model)]
    assert calls == ["corpus", "queries"] and second["cache"] == "hit"
    assert second["metrics"] == first["metrics"]
    evaluate(evaluate_config(beir, tmp_path, str(tiny_model), use_cache=False), console=quiet_console())
    assert calls[2:] == ["corpus", "queries"]
    with (beir / "corpus.jsonl").open("a") as handle:  # a changed corpus: encoded again, queries reused
        handle.write(json.dumps({"_id": "d6", "title": "", "text": "one more document"}) + "\n")
    evaluate(evaluate_config(beir, tmp_path, str(tiny_model)), console=quiet_console())
    assert calls[4:] == ["corpus"]
    encoder = load_encoder(str(tiny_model))
    copy = tmp_path / "copy"
    save_encoder(encoder, copy)  # another model directory: its own cache entries
    evaluate(evaluate_config(beir, tmp_path, str(copy)), console=quiet_console())
    assert calls[5:] == ["corpus", "queries"]


def test_bf16_encoding_stays_close_to_fp32_and_is_cached_apart(beir, tmp_path, tiny_model):
    encoder = load_encoder(str(tiny_model))
    texts = list(DOCS.values())
    fp32 = encode_documents(encoder, texts, Runtime(torch.device("cpu")), 2, "d")
    bf16 = encode_documents(encoder, texts, Runtime(torch.device("cpu"), encode_precision="bf16"), 2, "d")
    assert bf16.dtype == torch.float32 and not torch.equal(bf16, fp32)  # really computed in bf16, returned in fp32
    assert torch.nn.functional.cosine_similarity(bf16, fp32).min() > 0.99
    first = evaluate(evaluate_config(beir, tmp_path, str(tiny_model), precision="fp32"), console=quiet_console())["models"][str(tiny_model)]
    second = evaluate(evaluate_config(beir, tmp_path, str(tiny_model), precision="bf16"), console=quiet_console())["models"][str(tiny_model)]
    assert (first["precision"], first["cache"]) == ("fp32", "miss")
    assert (second["precision"], second["cache"]) == ("bf16", "miss")  # other numbers: never served fp32's cache
    dtypes = sorted(json.loads(p.read_text())["dtype"] for p in (tmp_path / "cache").glob("*.json"))
    assert dtypes == ["float16", "float16", "float32", "float32"]  # half precision kept in half the bytes
    third = evaluate(evaluate_config(beir, tmp_path, str(tiny_model), precision="bf16"), console=quiet_console())
    assert third["models"][str(tiny_model)]["cache"] == "hit" and third["models"][str(tiny_model)]["metrics"] == second["metrics"]


def test_an_entry_is_filled_in_place_and_a_failed_encoding_leaves_nothing(tmp_path):
    with new_entry(tmp_path, "k", 3, 2, np.dtype(np.float16)) as out:
        assert isinstance(out, np.memmap) and not (tmp_path / "k.npy").exists()  # a temporary until complete
        out[:] = 1.5
    assert load_cached(tmp_path, "k", 3, 2, np.dtype(np.float16))[1] == "hit"
    with pytest.raises(RuntimeError), new_entry(tmp_path, "broken", 3, 2, np.dtype(np.float32)):
        raise RuntimeError("the model failed mid-way")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.json", "k.npy"]


def cache_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache").glob("*.npy"))


def counting_embed(monkeypatch) -> list[str]:
    calls: list[str] = []
    for side in ("encode_queries", "encode_documents"):  # every encoding evaluate does, by the part it names
        monkeypatch.setattr(embedding, side, lambda *a, real=getattr(embedding, side), **k: calls.append(a[4]) or real(*a, **k))
    return calls


def _damage(path: Path, how: str) -> None:
    """Change a cached array; all but 'bytes' also rewrite the sidecar to match, so only that check can catch it."""
    emb = np.load(path)
    if how == "bytes":  # a flipped byte in the data: only the checksum notices
        data = bytearray(path.read_bytes())
        data[-3] ^= 0x40
        path.write_bytes(bytes(data))
        return
    if how == "sidecar":
        path.with_suffix(".json").unlink()
        return
    changed = {"nan": np.where(np.arange(emb.size).reshape(emb.shape) == 1, np.nan, emb).astype(np.float32),
               "shape": emb[:-1], "dtype": emb.astype(np.float64)}[how]
    np.save(path, changed)
    path.with_suffix(".json").write_text(json.dumps(
        {"shape": list(emb.shape), "dtype": "float32", "sha256": file_sha256(path)}))


@pytest.mark.parametrize("how", ["bytes", "nan", "shape", "dtype", "sidecar"])
def test_a_damaged_cache_entry_is_recomputed_and_overwritten(beir, tmp_path, tiny_model, monkeypatch, how):
    calls = counting_embed(monkeypatch)
    first = evaluate(evaluate_config(beir, tmp_path, str(tiny_model), precision="fp32"), console=quiet_console())["models"][str(tiny_model)]
    corpus_entry = max(cache_files(tmp_path), key=lambda p: np.load(p).shape[0])  # 5 documents, 3 queries
    _damage(corpus_entry, how)
    second = evaluate(evaluate_config(beir, tmp_path, str(tiny_model), precision="fp32"), console=quiet_console())["models"][str(tiny_model)]
    assert calls == ["corpus", "queries", "corpus"] and second["cache"] == "partial"
    assert second["per_query"] == first["per_query"]
    third = evaluate(evaluate_config(beir, tmp_path, str(tiny_model), precision="fp32"), console=quiet_console())["models"][str(tiny_model)]
    assert calls == ["corpus", "queries", "corpus"] and third["cache"] == "hit"  # the entry was written anew


def test_an_unwritable_cache_warns_once_and_the_run_goes_on(beir, tmp_path, tiny_model, monkeypatch):
    import errno

    import ragtrain.retrieval.cache as cache

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache.os, "posix_fallocate", disk_full)  # the space an entry reserves before it is written
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["evaluate", str(tiny_model), "bm25", "--eval-data", str(beir), "--device", "cpu",
                                 "--cache-dir", str(tmp_path / "cache"), "--output", str(out)])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "cannot be written (no space left on the device)" in warnings[0]
    assert json.loads(out.read_text())["models"][str(tiny_model)]["metrics"]["recall@1"] >= 0
    assert not list((tmp_path / "cache").iterdir())  # no temporary file left behind
    (tmp_path / "file").write_text("")  # a cache folder that cannot even be made: its parent is a file
    monkeypatch.undo()
    result = runner.invoke(app, ["evaluate", str(tiny_model), "--eval-data", str(beir), "--device", "cpu",
                                 "--cache-dir", str(tmp_path / "file" / "cache")])
    assert result.exit_code == 0 and "cannot be written" in result.output, result.output


def test_a_hub_name_is_cached_by_its_revision_not_its_name(beir, tmp_path, tiny_model, monkeypatch):
    import huggingface_hub.constants


    hub = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    assert model_fingerprint("org/tiny") is None  # not in the hub cache: nothing to key it by, so no caching
    fake_hub_snapshot(hub, "org/tiny", "a" * 40, tiny_model)
    assert model_fingerprint("org/tiny")["revision"] == "a" * 40
    calls = counting_embed(monkeypatch)
    first = evaluate(evaluate_config(beir, tmp_path, "org/tiny", precision="fp32"), console=quiet_console())["models"]["org/tiny"]
    second = evaluate(evaluate_config(beir, tmp_path, "org/tiny", precision="fp32"), console=quiet_console())["models"]["org/tiny"]
    assert (first["cache"], second["cache"], calls) == ("miss", "hit", ["corpus", "queries"])
    # the hub moves main to a new commit with other weights: same name, new embeddings
    fake_hub_snapshot(hub, "org/tiny", "b" * 40, build_tiny_model(tmp_path / "other", seed=1))
    third = evaluate(evaluate_config(beir, tmp_path, "org/tiny", precision="fp32"), console=quiet_console())["models"]["org/tiny"]
    assert third["cache"] == "miss" and calls == ["corpus", "queries"] * 2
    reference = evaluate(evaluate_config(beir, tmp_path, str(tmp_path / "other"), precision="fp32", use_cache=False),
                         console=quiet_console())["models"][str(tmp_path / "other")]
    assert third["per_query"] == reference["per_query"]


def test_a_local_model_is_keyed_by_the_real_paths_of_its_files(tmp_path, tiny_model):
    import shutil

    linked = tmp_path / "linked"
    linked.mkdir()
    blobs = tmp_path / "blobs"
    shutil.copytree(tiny_model, blobs / "one")
    shutil.copytree(tiny_model, blobs / "two", copy_function=shutil.copy2)  # same sizes and times, other files
    for file in (blobs / "one").iterdir():
        (linked / file.name).symlink_to(file)
    before = model_fingerprint(str(linked))
    (linked / "model.safetensors").unlink()
    (linked / "model.safetensors").symlink_to(blobs / "two" / "model.safetensors")
    shutil.copystat(blobs / "one" / "model.safetensors", blobs / "two" / "model.safetensors")
    assert model_fingerprint(str(linked)) != before


def test_an_entry_reads_back_only_while_shape_dtype_checksum_and_values_hold(tmp_path):
    emb = np.arange(12, dtype=np.float32).reshape(4, 3)
    store_cached(tmp_path, "k", emb)
    cached, status = load_cached(tmp_path, "k", 4, 3)
    assert status == "hit" and np.array_equal(cached, emb)
    assert load_cached(tmp_path, "other", 4, 3) == (None, "absent")
    assert load_cached(tmp_path, "k", 5, 3) == (None, "shape or dtype")
    sidecar = json.loads((tmp_path / "k.json").read_text())
    assert sidecar == {"shape": [4, 3], "dtype": "float32", "sha256": file_sha256(tmp_path / "k.npy")}
    (tmp_path / "k.json").write_text(json.dumps(sidecar | {"sha256": "0" * 64}))
    assert load_cached(tmp_path, "k", 4, 3) == (None, "checksum")
    store_cached(tmp_path, "k", np.full((4, 3), np.inf, dtype=np.float32))
    assert load_cached(tmp_path, "k", 4, 3) == (None, "non-finite values")


def test_the_key_changes_with_the_model_the_texts_and_the_settings():
    key = cache_key({"path": "/m"}, ["a", "b"], {"max_length": 64})
    assert key == cache_key({"path": "/m"}, ["a", "b"], {"max_length": 64})
    assert len({key, cache_key({"path": "/n"}, ["a", "b"], {"max_length": 64}),
                cache_key({"path": "/m"}, ["a", "c"], {"max_length": 64}),
                cache_key({"path": "/m"}, ["a", "b"], {"max_length": 128})}) == 4
    assert texts_fingerprint(["ab", "c"]) != texts_fingerprint(["a", "bc"])  # lengths are part of it


def test_cached_or_encoded_encodes_once_then_serves_the_entry_and_off_encodes_always(tmp_path):
    calls: list[tuple[int, int]] = []

    def encode(start: int, end: int, out: np.ndarray) -> None:
        calls.append((start, end))
        out[:] = np.arange(start, end)[:, None]

    cache, half = EmbeddingCache(tmp_path), np.dtype(np.float16)
    emb, status = cached_or_encoded("corpus", 3, encode, "key", cache, 2, half)
    assert status == "miss" and emb.dtype == half and isinstance(emb, np.memmap)  # the entry, as it will be read
    emb, status = cached_or_encoded("corpus", 3, encode, "key", cache, 2, half)
    assert status == "hit" and emb.tolist() == [[0, 0], [1, 1], [2, 2]] and calls == [(0, 3)]
    assert cached_or_encoded("corpus", 3, encode, "key", cache, 2, np.dtype(np.float32))[1] == "miss"  # other dtype
    assert cached_or_encoded("corpus", 3, encode, None, cache, 2, half)[1] == "off"  # no key: a model without revision
    assert cached_or_encoded("corpus", 3, encode, "key", EmbeddingCache(None), 2, half)[1] == "off"
    assert calls == [(0, 3)] * 4
