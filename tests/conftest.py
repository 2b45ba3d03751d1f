"""Shared test helpers: a tiny randomly initialised BERT (no download), tiny triples, documents and BEIR folders,
and the check that a command stopped with one line."""

from __future__ import annotations

import json
import os
import string
from pathlib import Path

# Before transformers is imported (huggingface_hub reads it once, at import): tests never reach for the hub, so a
# missing model fails at once instead of after the network's timeouts.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from rich.console import Console
from transformers import BertConfig, BertModel, BertTokenizerFast
from typer.testing import CliRunner

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

WORDS = ("the a of and to in is for on with cat dog bird fish tree river mountain city car bike train bread "
         "oven yeast sugar water star planet orbit moon sun code python network cache memory model data").split()


def build_tiny_model(directory: Path, hidden_size: int = 32, seed: int = 0) -> Path:
    """A 2-layer BERT with a character-level WordPiece vocabulary, saved like any Hugging Face model."""
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *chars, *(f"##{c}" for c in chars)]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    # positional: transformers 5 names it `vocab` and silently ignores `vocab_file=` (every word became [UNK])
    tokenizer = BertTokenizerFast(str(directory / "vocab.txt"), do_lower_case=True)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden_size, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=2 * hidden_size, max_position_embeddings=128)
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Keep evaluate's embedding cache (also in subprocesses) out of ~/.cache."""
    previous = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    import huggingface_hub.constants

    huggingface_hub.constants.HF_HUB_OFFLINE = True  # in case huggingface_hub was imported before the variable was set
    yield
    if previous is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = previous


def with_length(encoder, max_length: int):
    """The same encoder reading `max_length` tokens per text (its settings replaced: tests only)."""
    import dataclasses

    encoder.settings = dataclasses.replace(encoder.settings, max_length=max_length)
    return encoder


def encoder_at(model: Path, max_length: int):
    """The model loaded to read `max_length` tokens per text (what --max-seq-length asks)."""
    from ragtrain.model.loading import load_encoder
    from ragtrain.model.settings import TextOptions

    return load_encoder(str(model), TextOptions(max_length=max_length))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert"))


TOPICS = {
    "baking": "Bread dough rises when yeast eats sugar. A hot oven bakes the loaf. Water and flour make the dough.",
    "astronomy": "A planet moves in an orbit around the sun. The moon orbits the planet. Stars shine at night.",
    "python": "Python code runs in an interpreter. A cache keeps data in memory. The network sends data fast.",
    "rivers": "A river flows from the mountain to the sea. Fish swim in the river water. Trees grow on the bank.",
    "cycling": "A bike has two wheels and a chain. Riders train on mountain roads. The city has bike lanes now.",
    "birds": "A bird builds a nest in a tree. Birds fly south in winter. The cat watches the bird from the grass.",
}


def write_triples(path: Path, count: int = 24, negatives: int = 1) -> Path:
    names = list(TOPICS)
    rows = []
    for n in range(count):
        topic = names[n % len(names)]
        other = names[(n + 1) % len(names)]
        # the number first: texts cut at a short --max-seq-length stay distinct passages (as token ids)
        rows.append({"query": f"{topic} question {n}", "positive": f"Note {n}. {TOPICS[topic]}",
                     "negatives": [f"Aside {n}-{j}. {TOPICS[other]}" for j in range(negatives)]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_documents(directory: Path, per_topic: int = 3) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for topic, text in TOPICS.items():
        for n in range(per_topic):
            body = "\n\n".join(f"{text} Detail {n}.{p} about {topic} number {n * 7 + p}." for p in range(3))
            (directory / f"{topic}-{n}.md").write_text(f"# {topic.title()} guide {n}\n\n{body}\n")
    return directory


@pytest.fixture
def triples_file(tmp_path) -> Path:
    return write_triples(tmp_path / "train.jsonl")


@pytest.fixture
def docs_dir(tmp_path) -> Path:
    return write_documents(tmp_path / "docs")


def file_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` by its relative path: a snapshot to compare before and after."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def write_files(folder: Path, files: dict[str, str | bytes]) -> Path:
    """Write each relative path's text or bytes under `folder`, making folders as needed."""
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    return folder


def fake_hub_snapshot(hub: Path, repo: str, commit: str, model: Path) -> Path:
    """A Hugging Face hub cache entry as the hub client leaves it: refs/main names the snapshot's commit."""
    import shutil

    folder = hub / f"models--{repo.replace('/', '--')}"
    shutil.copytree(model, folder / "snapshots" / commit)
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    return folder / "snapshots" / commit


def train_interrupted(monkeypatch, config, at_call: int) -> None:
    """Run train(config) and kill it (KeyboardInterrupt) as it starts its `at_call`-th step; the step put back."""
    import ragtrain.commands.train as train_command
    import ragtrain.training.loop as train_module

    calls = {"n": 0}
    real_step = train_module.train_step

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == at_call:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_command.train(config)
    monkeypatch.setattr(train_module, "train_step", real_step)


def gradients(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every parameter's gradient, by name (parameters without one are left out)."""
    return {name: p.grad.detach().clone() for name, p in module.named_parameters() if p.grad is not None}


# A small BEIR folder: three judged queries, one judged only 0 (so left out of the metrics), five documents.
DOCS = {"d1": "the cat sat on the tree", "d2": "bread dough and yeast in the oven", "d3": "a planet in orbit around the sun",
        "d4": "python code and a memory cache", "d5": "fish swim in the river water"}
QUERIES = {"q1": "cat tree", "q2": "bread oven", "q3": "planet sun", "q4": "no judgement here"}


def write_beir_folder(directory: Path, qrels_rows: list[tuple[str, str, int]], split: str = "test") -> Path:
    (directory / "qrels").mkdir(parents=True, exist_ok=True)
    (directory / "corpus.jsonl").write_text("".join(json.dumps({"_id": d, "title": "", "text": t}) + "\n" for d, t in DOCS.items()))
    (directory / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in QUERIES.items()))
    (directory / "qrels" / f"{split}.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in qrels_rows))
    return directory


@pytest.fixture
def beir(tmp_path) -> Path:
    return write_beir_folder(tmp_path / "eval", [("q1", "d1", 1), ("q2", "d2", 2), ("q3", "d3", 1), ("q4", "d5", 0)])


def quiet_console() -> Console:
    """A console that prints nowhere, for the tables of runs whose numbers a test reads from what they return."""
    return Console(file=open(os.devnull, "w"))


def user_error(args: list[str]) -> str:
    """Run the CLI with `args`, which must stop with exit code 2 and one line, no traceback; that line."""
    from ragtrain.cli import app

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def evaluate_config(eval_data: Path, tmp_path: Path, *models: str, **options):
    """An evaluation of `models` at k = 1 and 10 on the CPU, with its embedding cache under `tmp_path` (BM25 alone
    takes neither option)."""
    from ragtrain.config.evaluate import EvaluateConfig

    dense = {"device": "cpu", "cache_dir": tmp_path / "cache"} if set(models) != {"bm25"} else {}
    return EvaluateConfig(models=models, eval_data=eval_data, k_values=(1, 10), **(dense | options))


def prepare_config(inputs, out: Path, **options):
    """prepare-data on small inputs: 30-word passages, a fifth each for val and test, negatives from ranks 1-50."""
    from ragtrain.config.prepare import PrepareConfig

    options = {"max_words": 30, "overlap": 4, "val_fraction": 0.2, "test_fraction": 0.2,
               "negative_range": (1, 50)} | options
    return PrepareConfig(tuple(inputs), out, **options)


def jsonl_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def qrels_rows(path: Path) -> list[list[str]]:
    """The judgements of a qrels file, its header left out: [query id, corpus id, grade] each."""
    return [line.split("\t") for line in path.read_text().splitlines()[1:]]


CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def build_tiny_causal_lm(directory: Path, seed: int = 0) -> Path:
    """A 2-layer Llama with a byte-level BPE tokenizer and a ChatML chat template, randomly initialised."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([" ".join(WORDS), *TOPICS.values()], vocab_size=400, special_tokens=specials,
                            show_progress=False)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>", bos_token="<|im_start|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id)
    directory.mkdir(parents=True, exist_ok=True)
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory) -> Path:
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny-llama"))
