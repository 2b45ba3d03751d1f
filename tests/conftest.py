"""Shared fixtures: a tiny randomly initialised BERT (no download) and tiny triples/documents."""

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
from transformers import BertConfig, BertModel, BertTokenizerFast

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
