"""What a model name or directory must hold: each gap is one clear line, never a traceback or a silent wrong number."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from ragtrain.errors import UserError
from ragtrain.model.loading import load_encoder
from ragtrain.model.modelfiles import first_line, looks_like_path


def copy_of(tiny_model: Path, tmp_path: Path, name: str = "copy", without: tuple[str, ...] = ()) -> Path:
    target = tmp_path / name
    shutil.copytree(tiny_model, target, ignore=shutil.ignore_patterns(*without))
    return target


def test_a_directory_without_tokenizer_files_is_refused(tiny_model, tmp_path):
    bare = copy_of(tiny_model, tmp_path, without=("tokenizer*", "vocab.txt", "special_tokens_map.json"))
    assert sorted(p.name for p in bare.iterdir()) == ["config.json", "model.safetensors"]
    # transformers 5 would build BERT's tokenizer with only its 5 special tokens: every word [UNK]
    assert len(AutoTokenizer.from_pretrained(bare)) == 5
    with pytest.raises(UserError, match="has no tokenizer files"):
        load_encoder(str(bare))


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_unreadable_safetensors_name_the_file(tiny_model, tmp_path, damage):
    broken = copy_of(tiny_model, tmp_path)
    weights = broken / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"\x00garbage" * 9, "empty": b""}[damage])
    with pytest.raises(UserError, match=rf"{weights} is not a readable safetensors file"):
        load_encoder(str(broken))


@pytest.mark.parametrize("given", ["./no-such-model", "../no-such-model", "/no/such/model", "~/no-such-model",
                                   "{tmp}/sub/model", "{tmp}/config.json"])
def test_a_missing_local_path_is_not_called_a_bad_repo_id(tiny_model, tmp_path, monkeypatch, given):
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    given = given.format(tmp=tmp_path.name if given.startswith("{tmp}/sub") else tmp_path)
    if given.startswith(tmp_path.name):
        monkeypatch.chdir(tmp_path.parent)  # 'tmp/sub/model': its first part exists here, so it is a path
    with pytest.raises(UserError) as raised:
        load_encoder(given)
    message = str(raised.value)
    assert "Repo id" not in message and "repo_name" not in message
    assert ("is a file" in message) if given.endswith("config.json") else (f"model directory {given} not found" in message)


def test_what_reads_as_a_path_and_what_as_a_hub_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    for name in ("./m", "../m", "/m", "~/m", ".", "models/mini"):
        assert looks_like_path(name), name
    for name in ("sentence-transformers/all-MiniLM-L6-v2", "bert-base-uncased"):  # no folder 'sentence-transformers' here
        assert not looks_like_path(name), name


def test_an_exception_is_shown_by_its_first_line_cut_short():
    assert first_line(ValueError("first\nsecond")) == "first"
    assert first_line(OSError("x" * 300), 10) == "x" * 10 and first_line(KeyError()) == "KeyError"
