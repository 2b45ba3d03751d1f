"""train's defaults by data kind: prepare-data's manifest says which kind its triples are, and train takes the
labelled or the label-free set for the options not given."""

from __future__ import annotations

import json

from ragtrain.commands.prepare import prepare
from ragtrain.config.datakinds import (
    LABEL_FREE_DEFAULTS,
    LABELLED_DEFAULTS,
    DataKind,
    defaults_line,
    with_kind_defaults,
)
from ragtrain.config.train import TrainConfig
from ragtrain.data.manifest import read_data_kind
from tests.conftest import prepare_config, write_triples


def resolved(config: TrainConfig) -> TrainConfig:
    """What train does first: the kind read from the manifest beside the triples, its defaults for what is unset."""
    return with_kind_defaults(config, read_data_kind(config.train_data))


def with_manifest(tmp_path, content) -> TrainConfig:
    tmp_path.mkdir(parents=True, exist_ok=True)
    triples = write_triples(tmp_path / "train.jsonl")
    if content is not None:
        (tmp_path / "manifest.json").write_text(json.dumps(content))
    return resolved(TrainConfig(train_data=triples, output_dir=tmp_path / "run"))


def test_building_a_config_reads_no_manifest_and_leaves_the_kind_options_unset(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"data_kind": "labelled"}))
    config = TrainConfig(train_data=tmp_path / "train.jsonl", output_dir=tmp_path / "run")
    assert (config.learning_rate, config.epochs, config.temperature, config.warmup_ratio, config.grad_cache,
            config.defaulted) == (None, None, None, None, None, ())
    config.validate()  # unset options wait for the kind's defaults; validation reads no disk


def test_labelled_triples_take_the_labelled_set(tmp_path):
    config = with_manifest(tmp_path, {"data_kind": "labelled"})
    assert (config.learning_rate, config.epochs, config.temperature, config.warmup_ratio) == \
        tuple(LABELLED_DEFAULTS[k] for k in ("learning_rate", "epochs", "temperature", "warmup_ratio"))
    assert config.defaulted == ("learning_rate", "epochs", "temperature", "warmup_ratio", "grad_cache")
    assert config.grad_cache is True  # their memory bounded: 4 negatives at 256 tokens need 8.8 GB in one pass
    line = defaults_line(config.defaulted, read_data_kind(config.train_data))
    assert line.startswith("defaults for labelled triples (") and line.endswith("--warmup-ratio 0.1, --grad-cache")


def test_grad_cache_stays_off_under_accumulation_or_when_refused(tmp_path):
    with_manifest(tmp_path, {"data_kind": "labelled"})
    triples = tmp_path / "train.jsonl"
    for options in ({"grad_accum_steps": 2}, {"grad_cache": False}):
        config = resolved(TrainConfig(train_data=triples, output_dir=tmp_path / "r", **options))
        assert config.grad_cache is False and "grad_cache" not in config.defaulted
        config.validate()
    free = with_manifest(tmp_path / "free", {"data_kind": "label-free"})
    assert free.grad_cache is True and "grad_cache" in free.defaulted


def test_label_free_triples_and_triples_without_a_manifest_take_the_label_free_set(tmp_path):
    free = with_manifest(tmp_path / "a", {"data_kind": "label-free"})
    bare = with_manifest(tmp_path / "b", None)
    for config in (free, bare):
        assert (config.learning_rate, config.epochs, config.temperature) == (2e-5, 1, 0.05)
    assert LABEL_FREE_DEFAULTS["learning_rate"] == 2e-5
    assert "no readable" in defaults_line(bare.defaulted, read_data_kind(bare.train_data))


def test_an_older_manifest_is_read_by_its_options_and_a_given_option_wins(tmp_path):
    config = with_manifest(tmp_path, {"options": {"beir": "scifact", "pairs": None}})
    kind = read_data_kind(config.train_data)
    assert kind.kind == "labelled"
    given = resolved(TrainConfig(train_data=config.train_data, output_dir=tmp_path / "run", learning_rate=3e-5, epochs=5))
    assert (given.learning_rate, given.epochs, given.temperature) == (3e-5, 5, LABELLED_DEFAULTS["temperature"])
    assert given.defaulted == ("temperature", "warmup_ratio", "grad_cache")
    assert "--learning-rate" not in defaults_line(given.defaulted, kind)
    everything = with_kind_defaults(TrainConfig(train_data=config.train_data, output_dir=tmp_path / "r",
                                                learning_rate=3e-5, epochs=5, temperature=0.1, warmup_ratio=0.0,
                                                grad_cache=True), kind)
    assert everything.defaulted == () and defaults_line(everything.defaulted, kind) is None
    assert DataKind(None, "x").defaults == LABEL_FREE_DEFAULTS


def test_prepare_data_writes_the_kind_into_its_manifest(tmp_path, docs_dir):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"query": f"question {n} about bread", "positive": f"Answer {n}: the oven "
                                         "bakes bread from dough and yeast."}) + "\n" for n in range(12)))
    prepare(prepare_config([docs_dir], tmp_path / "free", negatives=0))
    prepare(prepare_config([], tmp_path / "labelled", pairs=pairs, negatives=0))
    assert json.loads((tmp_path / "free" / "manifest.json").read_text())["data_kind"] == "label-free"
    assert json.loads((tmp_path / "labelled" / "manifest.json").read_text())["data_kind"] == "labelled"
    assert read_data_kind(tmp_path / "labelled" / "train.jsonl").kind == "labelled"


def test_train_prints_which_set_it_used(tmp_path, tiny_model, capsys):
    from typer.testing import CliRunner

    from ragtrain.cli import app

    triples = write_triples(tmp_path / "train.jsonl", 8)
    (tmp_path / "manifest.json").write_text(json.dumps({"data_kind": "labelled"}))
    result = CliRunner().invoke(app, ["train", "--train-data", str(triples), "--model", str(tiny_model), "-o",
                                      str(tmp_path / "run"), "--batch-size", "4", "--max-seq-length", "32",
                                      "--device", "cpu", "--epochs", "1"])
    assert result.exit_code == 0, result.output
    assert "defaults for labelled triples" in result.output and "--learning-rate 8e-05" in result.output
    assert "--epochs" not in result.output.split("defaults for labelled triples")[1].splitlines()[0]
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["learning_rate"] == LABELLED_DEFAULTS["learning_rate"] and saved["epochs"] == 1
