"""--config FILE: every command reads every option from TOML, YAML or JSON; flags typed on the command line win;
a run's config.json repeats the run; unknown keys, wrong types and broken files are one line naming the problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from ragtrain.cli import app
from ragtrain.config.common import as_dict
from ragtrain.config.options import flags_of
from tests.conftest import user_error, write_triples
from tests.test_cli import COMMANDS, PARSED, captured_config, non_default


def every_option_changed(monkeypatch, command: str):
    """The config that flags setting every option to something other than its default build."""
    args = []
    for field in flags_of(COMMANDS[command][0]):
        tokens = PARSED[command, field.field][0] if (command, field.field) in PARSED else non_default(field.flags[0])[0]
        args += tokens
    return captured_config(monkeypatch, command, args)


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
@pytest.mark.parametrize("command", COMMANDS)
def test_a_file_holding_every_option_builds_the_same_config_as_the_flags(monkeypatch, tmp_path, command, suffix):
    expected = every_option_changed(monkeypatch, command)
    options = as_dict(expected)  # as config.json holds them: paths as text, tuples as lists
    path = tmp_path / f"options{suffix}"
    path.write_text(json.dumps(options) if suffix == ".json" else yaml.safe_dump(options))
    assert captured_config(monkeypatch, command, ["--config", str(path)]) == expected


def test_toml_with_dashed_names_and_the_text_flags_read(monkeypatch, tmp_path):
    path = tmp_path / "train.toml"
    path.write_text('train-data = "t.jsonl"\nepochs = 3\nlearning_rate = 8e-5\nnormalize = false\n'
                    'report_to = "tensorboard"\nresume = true\n')
    config = captured_config(monkeypatch, "train", ["--config", str(path)])
    assert (config.train_data, config.epochs, config.learning_rate) == (Path("t.jsonl"), 3, 8e-5)
    assert config.normalize is False and config.report_to == ("tensorboard",) and config.resume == "latest"
    path.write_text('models = "bm25"\neval-data = "eval"\nk = "10,1"\ncache = false\n')
    config = captured_config(monkeypatch, "evaluate", ["--config", str(path)])
    assert (config.models, config.eval_data, config.k_values, config.use_cache) == (("bm25",), Path("eval"), (1, 10), False)
    path.write_text('output_dir = "out"\nnegative_range = [3, 9]\ninputs = ["docs", "notes.md"]\n')
    config = captured_config(monkeypatch, "prepare-data", ["--config", str(path)])
    assert config.negative_range == (3, 9) and config.inputs == (Path("docs"), Path("notes.md"))


def test_flags_typed_on_the_command_line_win_over_the_file_and_the_file_over_defaults(monkeypatch, tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("train_data: from-file.jsonl\nepochs: 3\nlearning_rate: 1e-5\nresume_from: run/checkpoints/step-2\n")
    config = captured_config(monkeypatch, "train", ["--config", str(path), "--epochs", "5", "--resume"])
    assert config.epochs == 5 and config.resume == "latest"  # typed: win (one of resume's two flags is enough)
    assert config.learning_rate == 1e-5 and config.train_data == Path("from-file.jsonl")  # YAML's 1e-5 is text
    assert config.batch_size == 32  # neither: the default
    # a flag typed at its default value still wins over the file
    assert captured_config(monkeypatch, "train", ["--config", str(path), "--epochs", "1"]).epochs == 1


@pytest.mark.parametrize("content, expected", [
    ('{"train_data": "t.jsonl", "learnig_rate": 0.1}', "unknown option 'learnig_rate' (did you mean 'learning_rate'?)"),
    ('{"train_data": "t.jsonl", "epochs": "two"}', "epochs must be an integer, got 'two'"),
    ('{"train_data": "t.jsonl", "epochs": true}', "epochs must be an integer, got True"),
    ('{"train_data": 3}', "train_data must be a path (text), got 3"),
    ('{"train_data": "t.jsonl", "normalize": "yes"}', "normalize must be true or false, got 'yes'"),
    ('{"train_data": "t.jsonl", "negative_range": 5}', "unknown option 'negative_range'"),  # prepare-data's
    ('{"train_data": "t.jsonl", "report_to": [1]}', "report_to must be a list of text, got [1]"),
    ('{"train_data": "t.jsonl", "learning-rate": 0.1, "learning_rate": 0.2}', "learning_rate is set twice"),
    ('[1, 2]', "must hold a table of options (name = value), got list"),
    ('{"train_data": "t.jsonl",', "not valid JSON"),
])
def test_a_bad_config_file_is_one_line_naming_the_key(tmp_path, content, expected):
    path = tmp_path / "options.json"
    path.write_text(content)
    line = user_error(["train", "--config", str(path)])
    assert expected in line and str(path) in line


def test_missing_or_unreadable_files_and_a_missing_required_option(tmp_path):
    assert "not found" in user_error(["train", "--config", str(tmp_path / "nowhere.toml")])
    (tmp_path / "bad.toml").write_text("epochs = = 3\n")
    assert "not valid TOML" in user_error(["train", "--config", str(tmp_path / "bad.toml")])
    (tmp_path / "bad.yaml").write_text("epochs: [3\n")
    assert "not valid YAML" in user_error(["train", "--config", str(tmp_path / "bad.yaml")])
    (tmp_path / "options.ini").write_text("epochs = 3\n")
    assert "use a .toml, .yaml (.yml) or .json file" in user_error(["train", "--config", str(tmp_path / "options.ini")])
    (tmp_path / "epochs.toml").write_text("epochs = 3\n")
    assert user_error(["train", "--config", str(tmp_path / "epochs.toml")]) == (
        "error: missing --train-data; give it on the command line or in --config FILE")
    assert "missing MODELS" in user_error(["evaluate", "--eval-data", str(tmp_path)])


@pytest.mark.slow
def test_a_run_directory_config_json_repeats_the_run(tmp_path, tiny_model):
    triples = write_triples(tmp_path / "train.jsonl", count=12, negatives=1)
    first = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--train-data", str(triples), "--model", str(tiny_model), "-o", str(first),
                                      "--batch-size", "4", "--max-seq-length", "32", "--learning-rate", "1e-3",
                                      "--device", "cpu", "--epochs", "2", "--seed", "7", "--symmetric"])
    assert result.exit_code == 0, result.output
    record = json.loads((first / "config.json").read_text())
    assert record["total_steps"] == 6 and record["seed"] == 7  # resolved keys beside the options
    result = CliRunner().invoke(app, ["train", "--config", str(first / "config.json"), "-o", str(tmp_path / "again")])
    assert result.exit_code == 0, result.output
    expected, got = load_file(first / "final" / "model.safetensors"), load_file(tmp_path / "again" / "final" / "model.safetensors")
    assert max((expected[k] - got[k]).abs().max().item() for k in expected) <= 1e-6
    again = json.loads((tmp_path / "again" / "config.json").read_text())
    assert again == record | {"output_dir": str(tmp_path / "again"), "defaulted": []}  # every option now given
    # without -o, the file's own output directory: a finished run there, refused as ever
    assert "holds a run" in user_error(["train", "--config", str(first / "config.json")])



def test_a_config_that_is_a_directory_says_so(tmp_path):
    """`--config DIR` said 'not found' of a folder that is there."""
    line = user_error(["train", "--config", str(tmp_path)])
    assert f"--config {tmp_path} is a directory; pass the options file itself" in line
