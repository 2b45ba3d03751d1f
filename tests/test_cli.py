"""The CLI: every flag of every command reaches its config field, --help lists them all, a run of each command on
tiny data, and user errors as one line with exit code 2."""

from __future__ import annotations

import dataclasses
import importlib
import json
import re
import tomllib
import typing
from pathlib import Path
from typing import Optional

import pytest
from typer.testing import CliRunner

from ragtrain.cli import app
from ragtrain.commands.prepare import PrepareSummary
from ragtrain.config.evaluate import EvaluateConfig
from ragtrain.config.options import Flag, flags_of
from ragtrain.config.prepare import PrepareConfig
from ragtrain.config.report import ReportConfig
from ragtrain.config.train import TrainConfig
from tests.conftest import user_error, write_beir_folder

runner = CliRunner()


COMMANDS = {  # command -> its config, and the function it hands the config to (patched here to capture it)
    "prepare-data": (PrepareConfig, "ragtrain.commands.prepare", "prepare"),
    "train": (TrainConfig, "ragtrain.commands.train", "train"),
    "evaluate": (EvaluateConfig, "ragtrain.commands.evaluate", "evaluate"),
    "report": (ReportConfig, "ragtrain.commands.report", "report"),
}
# Fields whose flags read text that becomes another value: the tokens to pass, and the field's value then.
PARSED = {
    ("prepare-data", "inputs"): (["docs", "notes.md"], (Path("docs"), Path("notes.md"))),
    ("prepare-data", "negative_range"): (["--negative-range", "3-9"], (3, 9)),
    ("train", "resume"): (["--resume-from", "run/checkpoints/step-4"], "run/checkpoints/step-4"),
    ("train", "report_to"): (["--report-to", "wandb,tensorboard,wandb"], ("wandb", "tensorboard")),
    ("train", "matryoshka_dims"): (["--matryoshka-dims", "256,64"], (256, 64)),
    ("evaluate", "models"): (["bm25", "some/model"], ("bm25", "some/model")),
    ("evaluate", "k_values"): (["--k", "10,2,10"], (2, 10)),
    ("report", "runs"): (["runs/a", "runs/b"], (Path("runs/a"), Path("runs/b"))),
    ("report", "evals"): (["--eval", "r1.json", "--eval", "r2.json"], (Path("r1.json"), Path("r2.json"))),
    ("report", "studies"): (["--study", "s1", "--study", "s2"], (Path("s1"), Path("s2"))),
}


def flag_name(flag: Flag, on: bool = True) -> str:
    """The flag as typed: its first name, or the --no- form of a switch."""
    dashed = flag.name.replace("_", "-")
    names = flag.decls[0].split("/") if flag.decls else [f"--{dashed}", f"--no-{dashed}"]
    return names[0] if on else names[-1]


def non_default(flag: Flag) -> tuple[list[str], object]:
    """Tokens that set `flag` to something other than its default, and the value it then reads."""
    kind = next((t for t in (bool, int, float, Path, str) if t == flag.type or t in typing.get_args(flag.type)), None)
    assert kind is not None, f"{flag.name} reads {flag.type}: give it a value here or in PARSED"
    if kind is bool:
        return [flag_name(flag, on=not flag.default)], not flag.default
    if kind is int:
        value = (flag.default or 0) + 7
    elif kind is float:
        value = (flag.default or 0.0) + 0.25
    else:
        value = kind("some/where") if kind is Path else "something-else"
    return [flag_name(flag), str(value)], value


def captured_config(monkeypatch, command: str, args: list[str]):
    """The config that `ragtrain <command> <args>` builds, caught where the command hands it over."""
    config_class, module, function = COMMANDS[command]
    seen = []
    returned = {"prepare": lambda config: PrepareSummary(config.output_dir), "train": lambda config: Path("final"),
                "evaluate": lambda config: {}, "report": lambda config: config.output}[function]
    monkeypatch.setattr(importlib.import_module(module), function, lambda config: seen.append(config) or returned(config))
    result = runner.invoke(app, [command, *args])
    assert result.exit_code == 0, result.output
    (config,) = seen
    assert isinstance(config, config_class)
    return config


@pytest.mark.parametrize("command", COMMANDS)
def test_every_flag_reaches_its_config_field(monkeypatch, command):
    """Every flag at once, each at a value other than its default; the config built holds each one."""
    config_class = COMMANDS[command][0]
    args, expected = [], {}
    for field in flags_of(config_class):
        if (command, field.field) in PARSED:
            tokens, expected[field.field] = PARSED[command, field.field]
        else:
            (flag,) = field.flags
            tokens, expected[field.field] = non_default(flag)
        args += tokens
    config = captured_config(monkeypatch, command, args)
    defaults = {f.name: f.default for f in dataclasses.fields(config_class)}
    for name, value in expected.items():
        assert getattr(config, name) == value, name
        assert value != defaults[name], name  # the flag really changed something


def test_resume_alone_continues_from_the_latest_checkpoint_and_nothing_starts_a_new_run(monkeypatch):
    assert captured_config(monkeypatch, "train", ["--train-data", "t.jsonl", "--resume"]).resume == "latest"
    assert captured_config(monkeypatch, "train", ["--train-data", "t.jsonl"]).resume is None
    config = captured_config(monkeypatch, "evaluate", ["bm25", "--eval-data", "eval"])
    assert config == EvaluateConfig(models=("bm25",), eval_data=Path("eval"))  # every other field at its default


def shown_name(flag: Flag) -> str:
    """How --help names a flag: MODELS, --[no-]normalize for a switch, else its first name."""
    if flag.argument:
        return flag.name.upper()
    names = flag.decls[0].split("/") if flag.decls else [f"--{flag.name.replace('_', '-')}"]
    switch = flag.type is bool or flag.type == Optional[bool]
    return f"--[no-]{names[0][2:]}" if switch and (len(names) == 2 or not flag.decls) else names[0]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_lists_every_flag_of_the_config_in_its_panel(command):
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    lines = result.output.splitlines()
    for field in flags_of(COMMANDS[command][0]):
        for flag in field.flags:
            assert flag.panel, f"{flag.name} has no --help panel"
            row = next(n for n, line in enumerate(lines) if re.match(rf"│ {re.escape(shown_name(flag))}[ ,.]", line))
            assert flag.help.split()[0] in lines[row]
            panel = max(n for n in range(row) if lines[n].startswith("╭─"))
            assert lines[panel].startswith(f"╭─ {flag.panel} "), (flag.name, lines[panel])


@pytest.mark.parametrize("old, precision", [({"mixed_precision": False, "precision": "bf16"}, "fp32"),
                                            ({"mixed_precision": True, "precision": "bf16"}, "bf16"),
                                            ({"mixed-precision": True, "precision": "fp16"}, "fp16")])
def test_a_config_json_from_before_precision_meant_one_thing_runs_as_it_ran(monkeypatch, tmp_path, old, precision):
    """ragtrain 0.1's first config.json recorded precision bf16 for an fp32 run (the dtype applied only under
    mixed_precision): given to --config, it trains in what that run trained in."""
    record = tmp_path / "config.json"
    record.write_text(json.dumps({"train_data": "t.jsonl", "log_steps": 10, "device_resolved": "cpu", **old}))
    config = captured_config(monkeypatch, "train", ["--config", str(record)])
    assert (config.precision, config.log_steps) == (precision, 10)


def test_version_prints_the_packages_version():
    from ragtrain.version import VERSION

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output == f"ragtrain {VERSION}\n"
    assert VERSION == tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]["version"]


@pytest.mark.slow
def test_prepare_train_evaluate_run_on_tiny_data(tmp_path, docs_dir, tiny_model):
    data = tmp_path / "data"
    result = runner.invoke(app, ["prepare-data", str(docs_dir), "--output-dir", str(data), "--max-words", "30",
                                 "--overlap", "4", "--val-fraction", "0.2", "--test-fraction", "0.2"])
    assert result.exit_code == 0, result.output
    assert (data / "train.jsonl").stat().st_size > 0
    result = runner.invoke(app, ["train", "--train-data", str(data / "train.jsonl"), "--model", str(tiny_model),
                                 "--output-dir", str(tmp_path / "run"), "--batch-size", "4", "--max-seq-length", "32"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()
    result = runner.invoke(app, ["evaluate", str(tiny_model), str(tmp_path / "run" / "final"), "bm25",
                                 "--eval-data", str(data / "eval"), "--k", "1,10", "--output", str(tmp_path / "r.json"),
                                 "--run-file", str(tmp_path / "run.trec")])
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "r.json").read_text())
    assert set(results["models"]) == {str(tiny_model), str(tmp_path / "run" / "final"), "bm25"}
    # BM25's recall@10, recomputed by hand from its run file and the test qrels
    relevant: dict[str, set[str]] = {}
    for line in (data / "eval" / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        query, doc, grade = line.split("\t")
        if int(grade) > 0:
            relevant.setdefault(query, set()).add(doc)
    top10: dict[str, set[str]] = {}
    for line in Path(results["models"]["bm25"]["run_file"]).read_text().splitlines():
        query, _, doc, rank, _, _ = line.split()
        if int(rank) <= 10:
            top10.setdefault(query, set()).add(doc)
    expected = sum(len(top10.get(q, set()) & docs) / len(docs) for q, docs in relevant.items()) / len(relevant)
    assert results["models"]["bm25"]["metrics"]["recall@10"] == pytest.approx(expected, abs=1e-12)


def test_missing_train_file_is_one_line(tmp_path):
    line = user_error(["train", "--train-data", str(tmp_path / "missing.jsonl")])
    assert "not found" in line and "prepare-data" in line


def test_batch_size_below_two_is_refused(triples_file):
    assert "--batch-size" in user_error(["train", "--train-data", str(triples_file), "--batch-size", "1"])


def test_malformed_triples_name_the_line(tmp_path, tiny_model):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "q", "positive": "p", "negatives": []}\n{not json\n')
    line = user_error(["train", "--train-data", str(bad), "--model", str(tiny_model),
                        "--output-dir", str(tmp_path / "run")])
    assert f"{bad}:2" in line


def test_prepare_with_missing_input(tmp_path):
    assert "not found" in user_error(["prepare-data", str(tmp_path / "nope"), "--output-dir", str(tmp_path / "o")])


def test_prepare_fractions_that_leave_no_training_data(tmp_path, docs_dir):
    line = user_error(["prepare-data", str(docs_dir), "--output-dir", str(tmp_path / "o"),
                        "--val-fraction", "0.5", "--test-fraction", "0.5"])
    assert "no training data" in line
    assert not (tmp_path / "o").exists()


def test_prepare_refuses_non_empty_output_without_overwrite(tmp_path, docs_dir):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert "--overwrite" in user_error(["prepare-data", str(docs_dir), "--output-dir", str(out)])
    assert (out / "keep.txt").read_text() == "mine"


def test_evaluate_with_missing_eval_data(tmp_path):
    assert "not found" in user_error(["evaluate", "bm25", "--eval-data", str(tmp_path / "none")])


def test_evaluate_with_bad_k(tmp_path):
    (tmp_path / "eval").mkdir()
    assert "--k" in user_error(["evaluate", "bm25", "--eval-data", str(tmp_path / "eval"), "--k", "1,ten"])


def test_unloadable_model_names_what_was_tried(tmp_path, triples_file):
    line = user_error(["train", "--train-data", str(triples_file), "--model", "no-such-model-anywhere",
                        "--output-dir", str(tmp_path / "run")])
    assert "cannot load model 'no-such-model-anywhere' (no such local directory, so the Hugging Face hub was tried)" in line
    assert "local model directory" in line
    line = user_error(["train", "--train-data", str(triples_file), "--model", str(tmp_path / "no-model"),
                        "--output-dir", str(tmp_path / "run")])
    assert line == f"error: model directory {tmp_path / 'no-model'} not found; check the path"


@pytest.mark.slow
def test_python_dash_m_runs_the_cli():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "ragtrain", "--help"], capture_output=True, text=True, check=True)
    assert "prepare-data" in out.stdout


def test_a_disk_error_no_writer_caught_is_one_line_and_any_other_os_error_a_traceback(capsys):
    import errno

    import typer

    from ragtrain.cli import reports_user_errors

    @reports_user_errors
    def full():
        raise OSError(errno.ENOSPC, "No space left on device", "/data/run/metrics.jsonl")

    with pytest.raises(typer.Exit) as exited:
        full()
    assert exited.value.exit_code == 2
    assert capsys.readouterr().err.strip() == ("error: /data/run/metrics.jsonl: no space left on the device; free "
                                               "some space and run again")

    @reports_user_errors
    def bug():
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "/tmp/x")

    with pytest.raises(FileNotFoundError):
        bug()


@pytest.mark.parametrize("seed", ["-1", str(2**32), str(2**64)])
def test_seed_out_of_numpy_range_is_one_line(tmp_path, docs_dir, triples_file, seed):
    assert "--seed" in user_error(["prepare-data", str(docs_dir), "-o", str(tmp_path / "o"), "--seed", seed])
    assert "--seed" in user_error(["train", "--train-data", str(triples_file), "-o", str(tmp_path / "run"),
                                    "--model", str(tmp_path / "none"), "--seed", seed])
    assert not (tmp_path / "o").exists() and not (tmp_path / "run").exists()


def test_unreadable_models_are_one_line_before_any_model_runs(tmp_path, tiny_model):
    import shutil

    eval_dir = write_beir_folder(tmp_path / "eval", [("q1", "d1", 1)])
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    (broken / "model.safetensors").write_bytes((broken / "model.safetensors").read_bytes()[:100])
    line = user_error(["evaluate", "bm25", str(broken), "--eval-data", str(eval_dir), "--device", "cpu"])
    assert f"{broken / 'model.safetensors'} is not a readable safetensors file" in line
    line = user_error(["evaluate", "bm25", "./typo/model", "--eval-data", str(eval_dir)])
    assert line == "error: model directory ./typo/model not found; check the path"


@pytest.mark.parametrize("flag", ["--learning-rate", "--temperature", "--isotropy-weight", "--weight-decay",
                                  "--max-grad-norm", "--head-learning-rate"])
def test_non_finite_float_options_are_refused(tmp_path, triples_file, flag):
    for value in ("inf", "nan"):
        line = user_error(["train", "--train-data", str(triples_file), "-o", str(tmp_path / "run"),
                            "--model", str(tmp_path / "none"), flag, value])
        assert flag in line and value in line
    line = user_error(["prepare-data", str(triples_file), "-o", str(tmp_path / "o"), "--false-negative-margin", "inf"])
    assert "--false-negative-margin" in line


def test_input_paths_of_the_wrong_kind_are_named_as_such(tmp_path, docs_dir, triples_file):
    for flag in ("--train-data", "--val-data"):
        args = ["--train-data", str(triples_file)] if flag == "--val-data" else []
        line = user_error(["train", *args, flag, str(docs_dir), "-o", str(tmp_path / "run")])
        assert f"{flag} {docs_dir} is a folder" in line
    # --eval-data goes through evaluate's loader, which also reads one JSON file: train accepts it too
    eval_json = tmp_path / "eval.json"
    eval_json.write_text(json.dumps({"queries": {"q": "cat"}, "corpus": {"d": "the cat"}, "relevant_docs": {"q": ["d"]}}))
    line = user_error(["train", "--train-data", str(triples_file), "--eval-data", str(eval_json),
                        "--model", str(tmp_path / "none"), "-o", str(tmp_path / "run")])
    assert "model directory" in line and "not found" in line  # the eval file passed; the missing model stopped it


def test_trec_qrels_get_a_hint(tmp_path):
    eval_dir = write_beir_folder(tmp_path / "eval", [])
    for line in ("q1\t0\td1\t1\n", "q1 0 d1 1\n"):
        (eval_dir / "qrels" / "test.tsv").write_text(line)
        assert "looks like TREC qrels" in user_error(["evaluate", "bm25", "--eval-data", str(eval_dir)])


def test_a_message_quoting_line_breaks_or_brackets_stays_one_literal_line(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "we[ird]\nname.json").write_text(json.dumps({"a\u001eb": "x", "c\nd": "y"}))  # found by the fuzz campaign
    line = user_error(["prepare-data", str(docs), "-o", str(tmp_path / "out")])
    assert "we[ird] name.json has no field 'text'" in line and "'a\\x1eb'" in line


@pytest.mark.parametrize("args, words", [
    (["evaluate", "bm25", "--eval-data", "eval", "--truncate-dim", "abc"],
     "error: Invalid value for '--truncate-dim': Input should be a valid integer"),
    (["train", "--train-data", "t.jsonl", "--no-such-flag"], "error: No such option: --no-such-flag"),
    (["trian"], "error: No such command 'trian'"),
])
def test_a_usage_error_is_one_line_not_clicks_box(args, words):
    """A value of the wrong type printed click's multi-line box of usage, hint and message."""
    line = user_error(args)
    assert line.startswith(words) and line.endswith("--help'") and "╭" not in line


def test_ragtrain_alone_still_shows_its_help():
    result = CliRunner().invoke(app, [])
    assert "prepare-data" in result.output and "error" not in result.output


@pytest.mark.slow
def test_verbose_shows_the_library_warnings_a_command_hides(tmp_path, triples_file, tiny_model):
    """peft and transformers warn of their own deprecations during a LoRA run: hidden, unless --verbose."""
    import subprocess
    import sys

    pytest.importorskip("peft")
    args = [sys.executable, "-W", "default", "-m", "ragtrain", "train", "--train-data", str(triples_file), "--model",
            str(tiny_model), "--batch-size", "8", "--max-seq-length", "32", "--device", "cpu", "--lora-rank", "2"]
    quiet = subprocess.run([*args, "-o", str(tmp_path / "quiet")], capture_output=True, text=True)
    verbose = subprocess.run([*args, "-o", str(tmp_path / "verbose"), "--verbose"], capture_output=True, text=True)
    assert quiet.returncode == verbose.returncode == 0, quiet.stderr + verbose.stderr
    assert "Warning" not in quiet.stderr and "Warning:" in verbose.stderr
