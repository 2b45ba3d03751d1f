"""The hostile campaign of issue 29 as a table per command: outputs that would overwrite, hold or sit inside an
input (files as well as folders), --overwrite over what ragtrain did not write, and options that would be ignored
or contradict each other. Every case must stop with exit code 2 and one line naming the problem, before anything
is written: each test compares every byte under the world folder before and after."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ragtrain.model.loading import load_encoder
from ragtrain.model.saving import save_encoder
from tests.conftest import file_bytes, user_error, write_beir_folder, write_documents, write_triples

EVAL_JSON = {"queries": {"q1": "cat tree"}, "corpus": {"d1": "the cat sat on the tree", "d2": "bread"},
             "relevant_docs": {"q1": ["d1"]}}


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model) -> Path:
    """Every kind of input a user holds: documents, pairs, BEIR sets, triples, JSON evaluation data, a model, two
    saved models, a training run, evaluation results, a tune study, a user's own folder and --config files."""
    root = tmp_path_factory.mktemp("world")
    write_documents(root / "docs")
    (root / "pairs.jsonl").write_text(json.dumps({"query": "cat tree", "positive": "the cat sat on the tree"}) + "\n")
    write_beir_folder(root / "data" / "eval", [("q1", "d1", 1), ("q2", "d2", 1)])
    write_triples(root / "data" / "train.jsonl", count=8)
    write_triples(root / "data" / "val.jsonl", count=4)
    (root / "data" / "eval.json").write_text(json.dumps(EVAL_JSON))
    shutil.copytree(tiny_model, root / "model")
    for name in ("a", "b"):
        save_encoder(load_encoder(str(tiny_model)), root / "saved" / name)
    run = root / "run"
    (run / "checkpoints" / "step-2").mkdir(parents=True)
    (run / "checkpoints" / "step-2" / "state.json").write_text(json.dumps({"step": 2}))
    (run / "config.json").write_text(json.dumps({"train_data": "data/train.jsonl", "output_dir": str(run)}))
    (run / "metrics.jsonl").write_text(json.dumps({"step": 0, "epoch": 0, "ndcg@10": 0.1}) + "\n"
                                       + json.dumps({"step": 2, "epoch": 0, "loss": 1.5}) + "\n")
    (root / "results.json").write_text(json.dumps({"models": {"bm25": {"metrics": {"ndcg@10": 0.5}}}}))
    (root / "study").mkdir()
    (root / "study" / "results.json").write_text("[]")
    (root / "user" / "sub").mkdir(parents=True)
    (root / "user" / "thesis.txt").write_text("three years of work")
    (root / "user" / "sub" / "data.csv").write_text("a,b\n1,2\n")
    shutil.copytree(root / "saved" / "a", root / "annotated")
    (root / "annotated" / "notes.txt").write_text("mine")
    (root / "report-into-run.json").write_text(json.dumps({"runs": [str(run)], "output": str(run / "metrics.jsonl")}))
    (root / "report-onto-itself.json").write_text(json.dumps({"runs": [str(run)],
                                                              "output": str(root / "report-onto-itself.json")}))
    (root / "evaluate-onto-itself.json").write_text(json.dumps({"models": ["bm25"], "eval_data": str(root / "data" / "eval"),
                                                                "output": str(root / "evaluate-onto-itself.json")}))
    return root


def refused(world: Path, args: list[str], *words: str) -> None:
    """`args` (paths written relative to the world, as 'W/...') stop with one line holding `words`; nothing under
    the world changed."""
    before = file_bytes(world)
    line = user_error([arg.replace("W/", f"{world}/") for arg in args])
    for word in words:
        assert word.replace("W/", f"{world}/") in line, line
    assert file_bytes(world) == before


# ---- prepare-data
PREPARE = ["--max-words", "30", "--overlap", "4"]


@pytest.mark.parametrize("args, words", [
    (["W/docs", "-o", "W/docs", "--overwrite"], ["--output-dir W/docs is the input W/docs"]),
    (["W/docs", "-o", "W/docs/prepared"], ["is inside the input W/docs"]),
    (["W/docs", "-o", "W/", "--overwrite"], ["holds the input W/docs"]),
    (["--pairs", "W/pairs.jsonl", "-o", "W/pairs.jsonl", "--overwrite"], ["is the input W/pairs.jsonl (--pairs)"]),
    (["--beir", "W/data/eval", "-o", "W/data", "--overwrite"], ["holds the input W/data/eval (--beir)"]),
    (["W/docs", "-o", "W/model/out", "--miner", "dense", "--model", "W/model"], ["inside the input W/model (--model)"]),
    (["W/docs", "-o", "W/user", "--overwrite"], ["is not a prepare-data output"]),
    (["W/docs", "-o", "W/user"], ["is not empty"]),
    (["W/docs", "-o", "W/out", "--teacher", "W/model"], ["is not a cross-encoder"]),
    (["W/docs", "-o", "W/out", "--query-prompt", "q: "], ["--query-prompt and --document-prompt are for --miner dense"]),
    (["W/docs", "-o", "W/out", "--query-strategy", "llm", "--generator-url", "localhost:8000", "--generator-model",
      "m"], ["--generator-url must be an http:// or https:// URL"]),
    (["W/docs", "-o", "W/out", "--seed", "abc"], ["Invalid value for '--seed'"]),
])
def test_prepare_data_refuses(world, args, words):
    refused(world, ["prepare-data", *args, *PREPARE], *words)


# ---- train
def train(*args: str) -> list[str]:
    return ["train", "--train-data", "W/data/train.jsonl", "--model", "W/model", "--device", "cpu", *args]


@pytest.mark.parametrize("args, words", [
    (train("-o", "W/data", "--overwrite"), ["holds the input W/data/train.jsonl (--train-data)"]),
    (train("-o", "W/data/train.jsonl"), ["--output-dir W/data/train.jsonl is a file"]),
    (train("-o", "W/model/run"), ["inside the input W/model (--model)"]),
    (train("-o", "W/data/eval/run", "--eval-data", "W/data/eval"), ["inside the input W/data/eval (--eval-data)"]),
    (train("-o", "W/run", "--val-data", "W/run/metrics.jsonl"), ["holds the input W/run/metrics.jsonl (--val-data)"]),
    (train("-o", "W/user", "--overwrite"), ["is not empty and holds no ragtrain run"]),
    (train("-o", "W/out", "--lora-target-modules", "query"), ["--lora-target-modules shapes LoRA adapters"]),
    (train("-o", "W/out", "--lora-alpha", "8", "--lora-save", "adapter"), ["--lora-alpha, --lora-save shape LoRA"]),
    (train("-o", "W/out", "--precision", "fp16"), ["--precision fp16 needs a CUDA device"]),
    (train("-o", "W/out", "--matryoshka-dims", "16,16"), ["largest first, each once, such as 16; got 16,16"]),
    (train("-o", "W/out", "--matryoshka-dims", "8,16"), ["largest first, each once, such as 16,8; got 8,16"]),
    (train("-o", "W/out", "--matryoshka-dims", "16,"), ["--matryoshka-dims must be comma-separated integers"]),
    (train("-o", "W/out", "--batch-size", "many"), ["Invalid value for '--batch-size'"]),
    (train("-o", "W/out", "--config", "W/data"), ["--config W/data is a directory"]),
])
def test_train_refuses(world, args, words):
    refused(world, args, *words)


# ---- evaluate
@pytest.mark.parametrize("args, words", [
    (["W/model", "--eval-data", "W/data/eval.json", "--output", "W/data/eval.json"],
     ["--output W/data/eval.json is the input W/data/eval.json (--eval-data)"]),
    (["W/model", "--eval-data", "W/data/eval", "--run-file", "W/data/eval/corpus.jsonl"],
     ["--run-file W/data/eval/corpus.jsonl is inside the input W/data/eval (--eval-data)"]),
    (["W/model", "--eval-data", "W/data/eval", "--output", "W/model/config.json"],
     ["--output W/model/config.json is inside the input W/model (model)"]),
    (["W/run", "--eval-data", "W/data/eval", "--output", "W/run/metrics.jsonl"], ["is inside the input W/run (model)"]),
    (["W/model", "--eval-data", "W/data/eval", "--output", "W/x.json", "--run-file", "W/x.json"],
     ["--output W/x.json and --run-file W/x.json are the same path"]),
    (["bm25", "W/model", "--eval-data", "W/data/eval", "--output", "W/r.bm25.trec", "--run-file", "W/r.trec"],
     ["--output W/r.bm25.trec and --run-file W/r.bm25.trec are the same path"]),
    (["W/model", "--eval-data", "W/data/eval", "--cache-dir", "W/data/eval"], ["--cache-dir W/data/eval is the input"]),
    (["--config", "W/evaluate-onto-itself.json"],
     ["--output W/evaluate-onto-itself.json is the input W/evaluate-onto-itself.json (--config)"]),
    (["bm25", "--eval-data", "W/data/eval", "--truncate-dim", "8"], ["--truncate-dim applies to dense models"]),
    (["bm25", "--eval-data", "W/data/eval", "--query-prompt", "q: ", "--device", "cuda"],
     ["--query-prompt, --device apply to dense models, and only bm25 is evaluated"]),
    (["bm25", "--eval-data", "W/data/eval", "--max-seq-length", "100000"], ["--max-seq-length applies to dense"]),
    (["W/model", "--eval-data", "W/data/eval", "--truncate-dim", "abc"], ["Invalid value for '--truncate-dim'"]),
])
def test_evaluate_refuses(world, args, words):
    refused(world, ["evaluate", *args], *words)


# ---- report
@pytest.mark.parametrize("args, words", [
    (["W/run", "-o", "W/run/metrics.jsonl"], ["--output W/run/metrics.jsonl is inside the input W/run (run)"]),
    (["W/run", "-o", "W/run/config.json"], ["is inside the input W/run (run)"]),
    (["--eval", "W/results.json", "-o", "W/results.json"], ["is the input W/results.json (--eval)"]),
    (["--study", "W/study", "-o", "W/study/report.html"], ["is inside the input W/study (--study)"]),
    (["--config", "W/report-into-run.json"], ["--output W/run/metrics.jsonl is inside the input W/run (run)"]),
    (["--config", "W/report-onto-itself.json"], ["is the input W/report-onto-itself.json (--config)"]),
    (["W/run", "-o", "W/user/thesis.txt"], ["--output W/user/thesis.txt exists and is not a page 'ragtrain report'"]),
    (["W/run", "-o", "W/user"], ["--output W/user is a directory"]),
])
def test_report_refuses(world, args, words):
    refused(world, ["report", *args], *words)


# ---- tune
def tune(*args: str) -> list[str]:
    return ["tune", "--train-data", "W/data/train.jsonl", "--eval-data", "W/data/eval", "--eval-split", "test",
            "--model", "W/model", *args]


@pytest.mark.parametrize("args, words", [
    (tune("-o", "W/data"), ["--output-dir W/data holds the input W/data/train.jsonl (--train-data)"]),
    (tune("-o", "W/model/study"), ["is inside the input W/model (--model)"]),
    (tune("-o", "W/study2", "--storage", "W/data/train.jsonl"), ["--storage W/data/train.jsonl is not an Optuna journal"]),
    (tune("-o", "W/study2", "--warmup-range", "0,1.5"), ["--warmup-ratio must be in [0, 1), got 1.5"]),
    (tune("-o", "W/study2", "--epochs-range", "0,0"), ["--epochs must be at least 1, got 0"]),
])
def test_tune_refuses(world, args, words):
    refused(world, args, *words)


# ---- merge
@pytest.mark.parametrize("args, words", [
    (["-o", "W/user", "--overwrite"], ["--overwrite refused: W/user is not a model ragtrain saved"]),
    (["-o", "W/run", "--overwrite"], ["--overwrite refused: W/run is a training run"]),
    (["-o", "W/annotated", "--overwrite"], ["W/annotated holds notes.txt, which is no file of a saved model"]),
    (["-o", "W/saved/a", "--overwrite"], ["--output-dir W/saved/a is the input W/saved/a (model)"]),
    (["-o", "W/saved", "--overwrite"], ["holds the input W/saved/a (model)"]),
    (["-o", "W/saved/b"], ["--output-dir W/saved/b is the input"]),
    (["-o", "W/docs"], ["--output-dir W/docs is not empty; pass --overwrite"]),
    (["-o", "W/out", "--weights", "1,x"], ["--weights must be comma-separated numbers"]),
])
def test_merge_refuses(world, args, words):
    refused(world, ["merge", "W/saved/a", "W/saved/b", *args], *words)
