"""Evaluation: data checks, exact chunked search, the embedding cache, reports and CLI user errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import ragtrain.evaluate as ev
from ragtrain.cli import app
from ragtrain.config import EvaluateConfig
from ragtrain.errors import UserError
from ragtrain.evaldata import load_eval_data
from ragtrain.evaluate import evaluate, resolve_model_dir
from ragtrain.model import load_encoder, save_encoder
from ragtrain.search import dense_search, embed_texts
from tests.conftest import DOCS, QUERIES, quiet_console, user_error, write_beir_folder

runner = CliRunner()

def config(beir: Path, tmp_path: Path, *models: str, **kwargs) -> EvaluateConfig:
    return EvaluateConfig(models=models, eval_data=beir, k_values=(1, 10), device="cpu",
                          cache_dir=tmp_path / "cache", **kwargs)


# ---- data

def test_queries_without_relevant_documents_are_excluded_and_counted(beir):
    data = load_eval_data(beir, "test")
    assert data.query_ids == ["q1", "q2", "q3"] and data.excluded_queries == 1
    assert data.qrels["q2"] == {"d2": 2}


def test_json_eval_file_in_sentence_transformers_schema(tmp_path):
    path = tmp_path / "test_eval.json"
    path.write_text(json.dumps({"queries": QUERIES, "corpus": {**DOCS, "d6": {"title": "T", "text": "body"}},
                                "relevant_docs": {"q1": ["d1"], "q2": {"d2": 3}, "q4": []}}))
    data = load_eval_data(path, "ignored")
    assert data.query_ids == ["q1", "q2"] and data.excluded_queries == 1
    assert data.qrels == {"q1": {"d1": 1}, "q2": {"d2": 3}}
    assert data.corpus_texts[-1] == "T body"


@pytest.mark.parametrize("rows, words", [
    ([("q1", "d9", 1), ("q2", "d8", 1), ("q3", "d1", 1)], ["2 document ids", "'d8'"]),
    ([("q9", "d1", 1)], ["1 query ids", "'q9'"]),
    ([], ["no judgements"]),
])
def test_bad_qrels_are_one_clear_line_with_exit_code_2(tmp_path, rows, words):
    beir = write_beir_folder(tmp_path / "eval", rows)
    line = user_error(["evaluate", "bm25", "--eval-data", str(beir)])
    assert all(word in line for word in words), line


def test_missing_split_names_the_available_ones(beir):
    line = user_error(["evaluate", "bm25", "--eval-data", str(beir), "--split", "dev"])
    assert "dev.tsv not found" in line and "available: test" in line


def test_missing_corpus_file(beir):
    (beir / "corpus.jsonl").unlink()
    assert "corpus.jsonl not found" in user_error(["evaluate", "bm25", "--eval-data", str(beir)])


@pytest.mark.parametrize("args, word", [(["--k", "0,5"], "--k"), (["--batch-size", "0"], "--batch-size"),
                                        (["--device", "tpu"], "--device")])
def test_bad_options_are_refused(beir, args, word):
    assert word in user_error(["evaluate", "bm25", "--eval-data", str(beir), *args])


def test_same_model_twice_is_refused(beir):
    assert "twice" in user_error(["evaluate", "bm25", "bm25", "--eval-data", str(beir)])


def test_unloadable_model_is_one_line(beir, tmp_path):
    assert "cannot load model" in user_error(["evaluate", "no-such-model-anywhere", "--eval-data", str(beir),
                                               "--cache-dir", str(tmp_path / "c")])
    assert "not found" in user_error(["evaluate", str(tmp_path / "nope"), "--eval-data", str(beir),
                                       "--cache-dir", str(tmp_path / "c")])


# ---- search

def test_chunked_search_equals_full_search_exactly():
    gen = torch.Generator().manual_seed(0)
    corpus = torch.randn(301, 16, generator=gen)
    corpus[200] = corpus[7]  # an exact tie: the lower index must rank first whatever the chunks
    queries = torch.cat([torch.randn(37, 16, generator=gen), corpus[7:8]])
    full_scores = queries @ corpus.T
    expected = torch.sort(full_scores, dim=1, descending=True, stable=True).indices[:, :25].numpy()
    for query_chunk, corpus_chunk in [(1000, 1000), (5, 64), (7, 13), (1, 1)]:
        indices, scores = dense_search(queries, corpus, 25, query_chunk=query_chunk, corpus_chunk=corpus_chunk)
        np.testing.assert_array_equal(indices, expected)
        # the same ranking; scores agree to float32 rounding (matrix products of other shapes sum differently)
        np.testing.assert_allclose(scores, np.take_along_axis(full_scores.numpy(), expected, axis=1), rtol=1e-5, atol=1e-5)
    assert list(dense_search(queries, corpus, 25)[0][-1][:2]) == [7, 200]


def test_depth_larger_than_corpus_returns_the_whole_corpus():
    assert dense_search(torch.eye(3), torch.eye(3), 100)[0].shape == (3, 3)


# ---- models, cache, reports

def test_bm25_baseline_finds_the_matching_documents(beir, tmp_path):
    results = evaluate(config(beir, tmp_path, "bm25"), console=quiet_console())
    assert results["models"]["bm25"]["metrics"]["recall@1"] == 1.0
    assert results["models"]["bm25"]["metrics"]["precision@10"] == pytest.approx(1 / 10)  # 5 docs, k = 10
    assert set(results["models"]["bm25"]["per_query"]) == {"q1", "q2", "q3"}
    assert results["data"]["excluded_queries"] == 1


def test_cache_hit_skips_encoding_and_key_follows_corpus_and_model(beir, tmp_path, tiny_model, monkeypatch):
    calls = []
    real = ev.embed_texts
    monkeypatch.setattr(ev, "embed_texts", lambda *a, **k: calls.append(a[6]) or real(*a, **k))
    first = evaluate(config(beir, tmp_path, str(tiny_model)), console=quiet_console())["models"][str(tiny_model)]
    assert calls == ["corpus", "queries"] and first["cache"] == "miss"
    second = evaluate(config(beir, tmp_path, str(tiny_model)), console=quiet_console())["models"][str(tiny_model)]
    assert calls == ["corpus", "queries"] and second["cache"] == "hit"
    assert second["metrics"] == first["metrics"]
    evaluate(config(beir, tmp_path, str(tiny_model), use_cache=False), console=quiet_console())
    assert calls[2:] == ["corpus", "queries"]
    with (beir / "corpus.jsonl").open("a") as handle:  # a changed corpus: encoded again, queries reused
        handle.write(json.dumps({"_id": "d6", "title": "", "text": "one more document"}) + "\n")
    evaluate(config(beir, tmp_path, str(tiny_model)), console=quiet_console())
    assert calls[4:] == ["corpus"]
    encoder, tokenizer = load_encoder(str(tiny_model))
    copy = tmp_path / "copy"
    save_encoder(encoder, tokenizer, copy, 64)  # another model directory: its own cache entries
    evaluate(config(beir, tmp_path, str(copy)), console=quiet_console())
    assert calls[5:] == ["corpus", "queries"]


def test_no_cache_writes_nothing(beir, tmp_path, tiny_model):
    result = runner.invoke(app, ["evaluate", str(tiny_model), "--eval-data", str(beir), "--no-cache",
                                 "--cache-dir", str(tmp_path / "cache"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "cache").exists()


def test_sentence_transformers_directory_matches_its_own_encode(beir, tmp_path, tiny_model):
    st = pytest.importorskip("sentence_transformers")
    encoder, tokenizer = load_encoder(str(tiny_model))
    model_dir = tmp_path / "st-model"
    save_encoder(encoder, tokenizer, model_dir, 64)
    (model_dir / "ragtrain.json").unlink()  # only the sentence-transformers files describe the head now
    reference = st.SentenceTransformer(str(model_dir), device="cpu").encode(list(QUERIES.values()), convert_to_tensor=True)
    encoder, tokenizer = load_encoder(str(model_dir))
    ours = embed_texts(encoder, tokenizer, list(QUERIES.values()), 2, 64, torch.device("cpu"), "q")
    torch.testing.assert_close(ours, reference.cpu(), atol=1e-5, rtol=1e-4)
    results = evaluate(config(beir, tmp_path, str(model_dir)), console=quiet_console())
    assert results["models"][str(model_dir)]["similarity"] == "cosine"


def test_run_and_checkpoint_directories_resolve_to_the_model(tmp_path, tiny_model):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text('{"epochs": 1}')  # train writes its options there, beside final/ and best/
    for sub in ("final", "checkpoints/step-5/model"):
        (run / sub).mkdir(parents=True)
        (run / sub / "config.json").write_text("{}")
    assert resolve_model_dir(str(run)) == str(run / "final")  # no validation: no best/
    (run / "best").mkdir()
    (run / "best" / "config.json").write_text("{}")
    assert resolve_model_dir(str(run)) == str(run / "best")  # chosen by validation, never worse than the base
    assert resolve_model_dir(str(run / "checkpoints" / "step-5")) == str(run / "checkpoints/step-5/model")
    assert resolve_model_dir(str(tiny_model)) == str(tiny_model)


def test_trec_run_file_and_json_output(beir, tmp_path):
    out, run_file = tmp_path / "results.json", tmp_path / "run.trec"
    result = runner.invoke(app, ["evaluate", "bm25", "--eval-data", str(beir), "--k", "1,3", "--output", str(out),
                                 "--run-file", str(run_file)])
    assert result.exit_code == 0, result.output
    lines = [line.split() for line in run_file.read_text().splitlines()]
    assert len(lines) == 3 * 3 and all(len(parts) == 6 and parts[1] == "Q0" and parts[5] == "bm25" for parts in lines)
    q1 = [parts for parts in lines if parts[0] == "q1"]
    assert [int(p[3]) for p in q1] == [1, 2, 3] and q1[0][2] == "d1"
    assert float(q1[0][4]) >= float(q1[1][4]) >= float(q1[2][4])
    saved = json.loads(out.read_text())
    assert saved["settings"]["k_values"] == [1, 3] and "timings" in saved["models"]["bm25"]
    assert saved["models"]["bm25"]["per_query"]["q1"]["recall@1"] == 1.0


# ---- precision

def test_auto_precision_is_bf16_exactly_where_the_cpu_computes_bf16_natively():
    """Checked against the kernel's CPU flags (an independent source), not against a patched probe."""
    import ragtrain.runtime as runtime
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("no /proc/cpuinfo to compare with")
    native = bool(set(cpuinfo.read_text().split()) & {"avx512_bf16", "amx_bf16", "amx_tile"})
    cpu = torch.device("cpu")
    assert runtime.inference_precision(cpu, "auto") == ("bf16" if native else "fp32")
    assert runtime.inference_precision(cpu, "fp32") == "fp32"
    assert runtime.inference_precision(cpu, "bf16") == "bf16"  # asked for: honoured, even if emulated
    with pytest.raises(UserError, match="fp16"):
        runtime.inference_precision(cpu, "fp16")


def test_bf16_encoding_stays_close_to_fp32_and_is_cached_apart(beir, tmp_path, tiny_model):
    encoder, tokenizer = load_encoder(str(tiny_model))
    texts = list(DOCS.values())
    fp32 = embed_texts(encoder, tokenizer, texts, 2, 64, torch.device("cpu"), "d")
    bf16 = embed_texts(encoder, tokenizer, texts, 2, 64, torch.device("cpu"), "d", "bf16")
    assert bf16.dtype == torch.float32 and not torch.equal(bf16, fp32)  # really computed in bf16, returned in fp32
    assert torch.nn.functional.cosine_similarity(bf16, fp32).min() > 0.99
    first = evaluate(config(beir, tmp_path, str(tiny_model), precision="fp32"), console=quiet_console())["models"][str(tiny_model)]
    second = evaluate(config(beir, tmp_path, str(tiny_model), precision="bf16"), console=quiet_console())["models"][str(tiny_model)]
    assert (first["precision"], first["cache"]) == ("fp32", "miss")
    assert (second["precision"], second["cache"]) == ("bf16", "miss")  # other numbers: never served fp32's cache


@pytest.mark.parametrize("args, word", [(["--precision", "fp8"], "--precision"),
                                        (["--precision", "fp16", "--device", "cpu"], "fp16")])
def test_bad_precision_is_refused_before_loading(beir, tmp_path, args, word):
    assert word in user_error(["evaluate", str(tmp_path / "no-model"), "--eval-data", str(beir), *args])


# ---- malformed and repeated data: one line each, or the first of a repeated id kept and counted

def _rows(path: Path, rows: list) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


@pytest.mark.parametrize("file, content, words", [
    ("corpus.jsonl", [{"title": "", "text": "no id"}], ["corpus.jsonl:1", "'_id'"]),
    ("queries.jsonl", [{"_id": "q1", "text": "cat tree"}, {"text": "no id"}], ["queries.jsonl:2", "'_id'"]),
    ("corpus.jsonl", [{"_id": ["d1"], "text": "a list as id"}], ["corpus.jsonl:1", "'_id'"]),
    ("corpus.jsonl", [{"_id": "d1", "text": ["not", "text"]}], ["corpus.jsonl:1", "'text' must be a string"]),
    ("queries.jsonl", [{"_id": "q1", "text": None}, {"_id": "q2", "text": "bread"}], ["no text", "'q1'"]),
    ("queries.jsonl", [{"_id": "q1", "text": "   "}, {"_id": "q2", "text": "bread"}], ["no text", "'q1'"]),
    ("qrels/test.tsv", ["query-id\tcorpus-id\tscore", "q1\td1\tinf"], ["test.tsv:2", "whole number"]),
    ("qrels/test.tsv", ["query-id\tcorpus-id\tscore", "q1\td1\tnan"], ["test.tsv:2", "whole number"]),
    ("qrels/test.tsv", ["query-id\tcorpus-id\tscore", "q1\td1\t1.5"], ["test.tsv:2", "whole number"]),
    ("qrels/test.tsv", ["query-id\tcorpus-id\tscore", "q1\td1"], ["test.tsv:2", "query-id<TAB>corpus-id<TAB>score"]),
])
def test_malformed_beir_rows_are_one_line(tmp_path, file, content, words):
    beir = write_beir_folder(tmp_path / "eval", [("q1", "d1", 1), ("q2", "d2", 1)])
    _rows(beir / file, content)
    line = user_error(["evaluate", "bm25", "--eval-data", str(beir)])
    assert all(word in line for word in words), line


def test_qrels_that_are_not_utf8_are_one_line(tmp_path):
    beir = write_beir_folder(tmp_path / "eval", [("q1", "d1", 1)])
    (beir / "qrels" / "test.tsv").write_bytes(b"query-id\tcorpus-id\tscore\nq1\td1\t1\nq\xe9\td1\t1\n")
    line = user_error(["evaluate", "bm25", "--eval-data", str(beir)])
    assert "test.tsv:3" in line and "UTF-8" in line and "0xe9" in line


@pytest.mark.parametrize("relevant, words", [
    ({"q1": {"d1": "1"}}, ["relevant_docs['q1']['d1']", "whole number"]),
    ({"q1": {"d1": None}}, ["relevant_docs['q1']['d1']", "whole number"]),
    ({"q1": {"d1": float("inf")}}, ["relevant_docs['q1']['d1']", "whole number"]),
    ({"q1": {"d1": True}}, ["whole number"]),
    ({"q1": "d1"}, ["relevant_docs['q1']", "list of document ids", "str"]),  # never read as the letters 'd', '1'
    ({"q1": 3}, ["relevant_docs['q1']", "list of document ids"]),
    ({"q1": [{"id": "d1"}]}, ["relevant_docs['q1']", "string or integer"]),
])
def test_bad_grades_and_relevant_docs_in_json_are_one_line(tmp_path, relevant, words):
    path = tmp_path / "eval.json"
    path.write_text(json.dumps({"queries": QUERIES, "corpus": DOCS, "relevant_docs": relevant}))
    line = user_error(["evaluate", "bm25", "--eval-data", str(path)])
    assert all(word in line for word in words), line


def test_repeated_ids_keep_the_first_and_are_counted_and_reported(tmp_path):
    beir = write_beir_folder(tmp_path / "eval", [("q1", "d1", 1), ("q2", "d2", 1), ("q1", "d1", 0)])
    with (beir / "corpus.jsonl").open("a") as handle:  # a second d1 whose text would match q2
        handle.write(json.dumps({"_id": "d1", "title": "", "text": "bread oven bread oven"}) + "\n")
    with (beir / "queries.jsonl").open("a") as handle:
        handle.write(json.dumps({"_id": "q2", "text": "cat tree"}) + "\n")
    data = load_eval_data(beir, "test")
    assert data.dropped == {"corpus_duplicate_ids": 1, "qrels_duplicate_judgements": 1, "queries_duplicate_ids": 1}
    assert data.corpus_ids == list(DOCS) and data.corpus_texts[0] == DOCS["d1"]
    assert data.query_texts == [QUERIES["q1"], QUERIES["q2"]] and data.qrels["q1"] == {"d1": 1}
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["evaluate", "bm25", "--eval-data", str(beir), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "warning" in result.output and "1 corpus duplicate ids" in result.output
    assert json.loads(out.read_text())["data"]["dropped_duplicates"] == data.dropped
    assert json.loads(out.read_text())["models"]["bm25"]["metrics"]["recall@1"] == 1.0


def test_repeated_keys_in_a_json_eval_file_keep_the_first(tmp_path):
    path = tmp_path / "eval.json"
    path.write_text('{"queries": {"q1": "cat tree", "q1": "bread oven"}, "corpus": {"d1": "the cat sat on the tree",'
                    ' "d2": "bread dough and yeast in the oven"}, "relevant_docs": {"q1": ["d1"]}}')
    data = load_eval_data(path, "ignored")
    assert data.query_texts == ["cat tree"] and data.dropped == {"json_duplicate_keys": 1}


def test_a_missing_split_names_the_flag_of_the_command_that_was_run(beir, tmp_path, triples_file):
    assert "choose --split" in user_error(["evaluate", "bm25", "--eval-data", str(beir), "--split", "dev"])
    line = user_error(["train", "--train-data", str(triples_file), "--eval-data", str(beir), "--eval-split", "dev",
                        "--output-dir", str(tmp_path / "run")])
    assert "choose --eval-split" in line and "available: test" in line


# ---- the embedding cache checks what it reads, keys hub names by revision, and never stops a run

def cache_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache").glob("*.npy"))


def counting_embed(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = ev.embed_texts
    monkeypatch.setattr(ev, "embed_texts", lambda *a, **k: calls.append(a[6]) or real(*a, **k))
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
    from ragtrain.search import file_sha256

    changed = {"nan": np.where(np.arange(emb.size).reshape(emb.shape) == 1, np.nan, emb).astype(np.float32),
               "shape": emb[:-1], "dtype": emb.astype(np.float64)}[how]
    np.save(path, changed)
    path.with_suffix(".json").write_text(json.dumps(
        {"shape": list(emb.shape), "dtype": "float32", "sha256": file_sha256(path)}))


@pytest.mark.parametrize("how", ["bytes", "nan", "shape", "dtype", "sidecar"])
def test_a_damaged_cache_entry_is_recomputed_and_overwritten(beir, tmp_path, tiny_model, monkeypatch, how):
    calls = counting_embed(monkeypatch)
    first = evaluate(config(beir, tmp_path, str(tiny_model), precision="fp32"), console=quiet_console())["models"][str(tiny_model)]
    corpus_entry = max(cache_files(tmp_path), key=lambda p: np.load(p).shape[0])  # 5 documents, 3 queries
    _damage(corpus_entry, how)
    second = evaluate(config(beir, tmp_path, str(tiny_model), precision="fp32"), console=quiet_console())["models"][str(tiny_model)]
    assert calls == ["corpus", "queries", "corpus"] and second["cache"] == "partial"
    assert second["per_query"] == first["per_query"]
    third = evaluate(config(beir, tmp_path, str(tiny_model), precision="fp32"), console=quiet_console())["models"][str(tiny_model)]
    assert calls == ["corpus", "queries", "corpus"] and third["cache"] == "hit"  # the entry was written anew


def test_an_unwritable_cache_warns_once_and_the_run_goes_on(beir, tmp_path, tiny_model, monkeypatch):
    import errno

    import ragtrain.search as search

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(search.np, "save", disk_full)
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["evaluate", str(tiny_model), "bm25", "--eval-data", str(beir), "--device", "cpu",
                                 "--cache-dir", str(tmp_path / "cache"), "--output", str(out)])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "cannot be written (No space left on device)" in warnings[0]
    assert json.loads(out.read_text())["models"][str(tiny_model)]["metrics"]["recall@1"] >= 0
    assert not list((tmp_path / "cache").iterdir())  # no temporary file left behind
    (tmp_path / "file").write_text("")  # a cache folder that cannot even be made: its parent is a file
    monkeypatch.undo()
    result = runner.invoke(app, ["evaluate", str(tiny_model), "--eval-data", str(beir), "--device", "cpu",
                                 "--cache-dir", str(tmp_path / "file" / "cache")])
    assert result.exit_code == 0 and "cannot be written" in result.output, result.output


def fake_hub_snapshot(hub: Path, repo: str, commit: str, model: Path) -> Path:
    """A Hugging Face hub cache entry as the hub client leaves it: refs/main names the snapshot's commit."""
    import shutil

    folder = hub / f"models--{repo.replace('/', '--')}"
    shutil.copytree(model, folder / "snapshots" / commit)
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    return folder / "snapshots" / commit


def test_a_hub_name_is_cached_by_its_revision_not_its_name(beir, tmp_path, tiny_model, monkeypatch):
    import huggingface_hub.constants

    from conftest import build_tiny_model
    from ragtrain.search import model_fingerprint

    hub = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    assert model_fingerprint("org/tiny") is None  # not in the hub cache: nothing to key it by, so no caching
    fake_hub_snapshot(hub, "org/tiny", "a" * 40, tiny_model)
    assert model_fingerprint("org/tiny")["revision"] == "a" * 40
    calls = counting_embed(monkeypatch)
    first = evaluate(config(beir, tmp_path, "org/tiny", precision="fp32"), console=quiet_console())["models"]["org/tiny"]
    second = evaluate(config(beir, tmp_path, "org/tiny", precision="fp32"), console=quiet_console())["models"]["org/tiny"]
    assert (first["cache"], second["cache"], calls) == ("miss", "hit", ["corpus", "queries"])
    # the hub moves main to a new commit with other weights: same name, new embeddings
    fake_hub_snapshot(hub, "org/tiny", "b" * 40, build_tiny_model(tmp_path / "other", seed=1))
    third = evaluate(config(beir, tmp_path, "org/tiny", precision="fp32"), console=quiet_console())["models"]["org/tiny"]
    assert third["cache"] == "miss" and calls == ["corpus", "queries"] * 2
    reference = evaluate(config(beir, tmp_path, str(tmp_path / "other"), precision="fp32", use_cache=False),
                         console=quiet_console())["models"][str(tmp_path / "other")]
    assert third["per_query"] == reference["per_query"]


def test_a_local_model_is_keyed_by_the_real_paths_of_its_files(tmp_path, tiny_model):
    import shutil

    from ragtrain.search import model_fingerprint

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


def test_a_first_line_with_inf_or_nan_is_a_bad_grade_not_a_header(tmp_path):
    for score in ("inf", "nan", "-inf"):
        beir = write_beir_folder(tmp_path / score, [])
        (beir / "qrels" / "test.tsv").write_text(f"q1\td1\t{score}\nq2\td2\t1\n")
        assert f"test.tsv:1: grade '{score}' is not a whole number" in user_error(["evaluate", "bm25", "--eval-data", str(beir)])
    beir = write_beir_folder(tmp_path / "header", [])
    (beir / "qrels" / "test.tsv").write_text("qid\tdocid\trelevance\nq1\td1\t1\n")  # a header of other words
    assert load_eval_data(beir, "test").qrels == {"q1": {"d1": 1}}


def test_bm25_over_a_corpus_without_an_indexable_word_scores_everything_zero(tmp_path):
    beir = write_beir_folder(tmp_path / "eval", [("q1", "d1", 1), ("q2", "d2", 1)])
    (beir / "corpus.jsonl").write_text("".join(json.dumps({"_id": d, "text": t}) + "\n"
                                               for d, t in [("d1", ""), ("d2", "the of a"), ("d3", "")]))
    results = evaluate(config(beir, tmp_path, "bm25"), console=quiet_console())["models"]["bm25"]
    assert results["per_query"]["q1"]["recall@1"] == 1.0 and results["per_query"]["q2"]["recall@1"] == 0.0  # corpus order
    assert results["metrics"]["recall@10"] == 1.0


def test_a_run_or_checkpoint_without_a_model_is_named_as_such(tmp_path, beir):
    run = tmp_path / "run"
    (run / "checkpoints" / "step-3").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"train_data": "t.jsonl", "epochs": 1}))  # train's options
    assert "no saved model yet" in user_error(["evaluate", str(run), "--eval-data", str(beir)])
    assert "holds no model (no config.json)" in user_error(["evaluate", str(run / "checkpoints" / "step-3"),
                                                            "--eval-data", str(beir)])


def test_train_warns_about_repeated_ids_in_its_eval_data_too(tmp_path, triples_file):
    beir = write_beir_folder(tmp_path / "eval", [("q1", "d1", 1)], split="val")
    with (beir / "corpus.jsonl").open("a") as handle:
        handle.write(json.dumps({"_id": "d1", "title": "", "text": "a second d1"}) + "\n")
    result = runner.invoke(app, ["train", "--train-data", str(triples_file), "--eval-data", str(beir),
                                 "--model", str(tmp_path / "no-model"), "-o", str(tmp_path / "run")])
    assert result.exit_code == 2  # the missing model stops it, after the data were read
    assert "warning:" in result.output and "1 corpus duplicate ids" in result.output
