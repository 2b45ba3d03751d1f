"""Pre-flight checks: what a command's options say about the disk, the installed packages and the environment,
checked before any work starts (a config's own validate() reads none of these). Each problem is one UserError
naming the option and the fix.

Every command names its outputs and its inputs here, as (flag, path) pairs, for the one rule of
files/outputdir.check_outputs: no output may be, hold or sit inside an input, nor overlap another output."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from ragtrain.config.common import require
from ragtrain.config.evaluate import EvaluateConfig
from ragtrain.config.merge import MergeConfig
from ragtrain.config.prepare import HYBRID_TEACHER, PrepareConfig
from ragtrain.config.report import ReportConfig
from ragtrain.config.train import TrainConfig
from ragtrain.config.tune import TuneConfig
from ragtrain.data.pairfiles import ROW_SUFFIXES
from ragtrain.files.atomic import check_writable
from ragtrain.files.names import CHECKPOINTS, METRICS_LOG, STUDY_RESULTS
from ragtrain.files.outputdir import Named, check_folder_output, check_outputs, check_prepare_output
from ragtrain.model.modelfiles import looks_like_path, model_files, require_classification_head
from ragtrain.model.saving import check_model_output
from ragtrain.reporting.evaltable import run_file_paths
from ragtrain.reporting.page import is_report_page
from ragtrain.retrieval.hybrid import HYBRID_PREFIX
from ragtrain.training.trackers import missing_package
from ragtrain.tuning.study import require_journal


def check_prepare(config: PrepareConfig) -> None:
    for path in config.inputs:
        require(path.exists(), f"input {path} not found; check the path")
    if config.pairs is not None:
        _check_pairs(config.pairs)
    require(config.beir is None or (config.beir / "corpus.jsonl").is_file(),
            f"--beir {config.beir} has no corpus.jsonl; pass a BEIR folder (corpus.jsonl, queries.jsonl, qrels/)")
    if config.uses_generator:
        _check_generator(config)
    if config.teacher not in (None, HYBRID_TEACHER):
        require(Path(config.teacher).expanduser().exists() or not looks_like_path(config.teacher),
                f"--teacher {config.teacher} not found; pass 'hybrid' or a cross-encoder directory or name")
        require_classification_head(config.teacher, model_files(config.teacher))  # before any passage is read
    check_folder_output(config.output_dir, prepare_inputs(config))
    check_prepare_output(config.output_dir, config.overwrite)
    check_writable(config.output_dir.parent, "--output-dir")  # the new output is built beside the old


def prepare_inputs(config: PrepareConfig) -> list[Named]:
    """What prepare-data reads, local models and the query cache included."""
    local = [(flag, Path(value).expanduser()) for flag, value in (("--model", config.model), ("--teacher", config.teacher),
                                                                  ("--generator", config.generator))
             if value and Path(value).expanduser().exists()]
    return [*(("input", p) for p in config.inputs), ("--pairs", config.pairs), ("--beir", config.beir),
            ("--generator-prompt", config.generator_prompt), ("--generator-examples", config.generator_examples),
            ("--generator-cache-dir", config.generator_cache_dir),
            *local]


def _check_pairs(path: Path) -> None:
    """The pairs exist, in a format prepare-data reads, with the package that format needs installed."""
    require(path.exists(), f"--pairs file {path} not found; check the path")
    if path.is_dir():
        require(any((path / name).is_file() for name in ("dataset_info.json", "dataset_dict.json", "state.json")),
                f"--pairs {path} is a folder but no dataset saved with save_to_disk; pass such a folder, or a JSONL, "
                "CSV or Parquet file")
        require(importlib.util.find_spec("datasets") is not None, "reading a saved Hugging Face dataset needs the "
                "datasets package: pip install 'ragtrain[datasets]'")
        return
    require(path.suffix.lower() in ROW_SUFFIXES, f"--pairs {path}: unknown format {path.suffix or '(none)'}; use "
            f"{', '.join(ROW_SUFFIXES)} or a saved Hugging Face dataset folder")
    require(path.suffix.lower() != ".parquet" or importlib.util.find_spec("pyarrow") is not None,
            "reading a Parquet file needs pyarrow: pip install 'ragtrain[parquet]'")


def _check_generator(config: PrepareConfig) -> None:
    """The generator's file, its key in the environment, and the prompt file."""
    from ragtrain.generation.generator import require_gguf, resolve_generator_path  # stdlib only: nothing loads
    from ragtrain.generation.querygen import read_examples, read_prompt

    if config.generator is not None:
        require_gguf(resolve_generator_path(config.generator)[1])
    require(not config.generator_api_key_env or bool(os.environ.get(config.generator_api_key_env)),
            f"--generator-api-key-env names {config.generator_api_key_env}, which is not set; export the key in that "
            "variable or drop the flag")
    if config.generator_prompt is not None:
        read_prompt(config.generator_prompt)
    if config.generator_examples is not None:
        read_examples(config.generator_examples)


def check_train(config: TrainConfig) -> None:
    for flag, path in (("--train-data", config.train_data), ("--val-data", config.val_data)):
        require(path is None or not path.is_dir(), f"{flag} {path} is a folder; pass a triples file such as "
                "train.jsonl or val.jsonl from 'ragtrain prepare-data'")
    require(config.train_data.is_file(), f"train file {config.train_data} not found; run 'ragtrain prepare-data' first")
    require(config.val_data is None or config.val_data.is_file(),
            f"validation file {config.val_data} not found; check --val-data")
    require(config.eval_data is None or config.eval_data.exists(),  # a BEIR folder, or a JSON file as evaluate reads
            f"evaluation set {config.eval_data} not found; pass the eval/ folder from 'ragtrain prepare-data' to "
            "--eval-data")
    for backend in config.report_to:
        missing = missing_package(backend)  # before any model loads, not after a run's setup
        require(missing is None, missing or "")
    require(not config.output_dir.is_file(), f"--output-dir {config.output_dir} is a file; choose a directory")
    check_folder_output(config.output_dir, train_inputs(config))
    check_writable(config.output_dir, "--output-dir")


def train_inputs(config: TrainConfig) -> list[Named]:
    """What the run reads: its output directory must neither hold nor sit inside any of these. The run's own
    checkpoints (--resume-from RUN/checkpoints/step-N) are no input in that sense."""
    paths: list[Named] = [("--train-data", config.train_data), ("--val-data", config.val_data),
                          ("--eval-data", config.eval_data)]
    if not config.resume and Path(config.model).exists():  # a resumed run loads the checkpoint's model instead
        paths.append(("--model", Path(config.model)))
    if config.resume and config.resume != "latest":
        own = (config.output_dir / CHECKPOINTS).resolve()
        if not Path(config.resume).resolve().is_relative_to(own):
            paths.append(("--resume-from", Path(config.resume)))
    return paths


def check_evaluate(config: EvaluateConfig) -> None:
    require(config.eval_data.exists(), f"evaluation data {config.eval_data} not found; pass the eval/ folder from "
            "'ragtrain prepare-data', a BEIR directory or a JSON file")
    require(config.eval_data.is_dir() or config.hybrid_tune_split is None,
            "--hybrid-tune-split needs a BEIR directory with that qrels split, not a JSON file")
    outputs = evaluate_outputs(config)
    for flag, path in outputs:
        require(path is None or not path.is_dir(), f"{flag} {path} is a directory; give a file name")
        # a device or pipe (/dev/full, a FIFO) would be replaced by the rename of a regular file
        require(path is None or not path.exists() or path.is_file(),
                f"{flag} {path} exists and is not a regular file; give a file name")
    require(config.cache_dir is None or not config.cache_dir.is_file(),
            f"--cache-dir {config.cache_dir} is a file; give a directory")
    cache = [("--cache-dir", config.cache_dir)] if config.use_cache else []  # written into: an output too
    check_outputs([*outputs, *cache], evaluate_inputs(config))
    for flag, path in outputs:
        if path is not None:
            check_writable(path.parent, flag)
    # no probe of --cache-dir: a cache that cannot be written only warns (the run goes on without it)


def evaluate_outputs(config: EvaluateConfig) -> list[Named]:
    """--output and every run file (one per model when several: <stem>.<tag><suffix>)."""
    runs = run_file_paths(config.run_file, config.models) if config.run_file else []
    return [("--output", config.output), *(("--run-file", path) for path in runs)]


def evaluate_inputs(config: EvaluateConfig) -> list[Named]:
    """The evaluation data, every local model (a run directory whole) and the --config file."""
    models = [m.removeprefix(HYBRID_PREFIX) for m in config.models]
    local = [("model", Path(m).expanduser()) for m in models if Path(m).expanduser().exists()]
    return [("--eval-data", config.eval_data), *local, ("--config", config.config_file)]


def check_report(config: ReportConfig) -> None:
    for study in config.studies:
        require((study / STUDY_RESULTS).is_file(), f"--study {study} has no {STUDY_RESULTS}; pass a directory "
                "'ragtrain tune' wrote (its --output-dir)")
    for run in config.runs:
        require(run.is_dir(), f"run directory {run} not found; pass a directory 'ragtrain train' wrote")
        require((run / METRICS_LOG).is_file(), f"{run} has no {METRICS_LOG}; pass a directory 'ragtrain train' wrote "
                "(its --output-dir)")
    for path in config.evals:
        require(path.is_file(), f"--eval {path} not found; pass a file written by 'ragtrain evaluate --output'")
    require(not config.output.is_dir(), f"--output {config.output} is a directory; give a file name such as report.html")
    require(not config.plots_dir.is_file(), f"{config.plots_dir} (where the plots go) is a file; move it or choose "
            "another --output")
    check_outputs([("--output", config.output), ("the plots folder", config.plots_dir)],
                  [*(("run", run) for run in config.runs), *(("--eval", path) for path in config.evals),
                   *(("--study", study) for study in config.studies), ("--config", config.config_file)])
    require(not config.output.exists() or is_report_page(config.output), f"--output {config.output} exists and is not "
            "a page 'ragtrain report' wrote, so ragtrain will not replace it; move it or choose another --output")
    require(importlib.util.find_spec("matplotlib") is not None, "ragtrain report draws with matplotlib, which is not "
            "installed; install it with pip install 'ragtrain[report]'")
    check_writable(config.output.parent, "--output")


def check_tune(config: TuneConfig) -> None:
    require(config.space is None or config.space.is_file(), f"search space file {config.space} not found; check --space")
    require(not config.output_dir.is_file(), f"--output-dir {config.output_dir} is a file; choose a directory")
    trial = config.trial_config()
    check_folder_output(config.output_dir, [*train_inputs(trial), ("--space", config.space)])
    if config.storage and "://" not in config.storage:  # a journal file: before the study directory is made
        require_journal(Path(config.storage).expanduser())
    check_writable(config.output_dir, "--output-dir")
    check_train(trial)  # every trial's files, checked once here


def check_merge(config: MergeConfig) -> None:
    models = [("model", Path(m).expanduser()) for m in config.models if Path(m).expanduser().exists()]
    base = [("--base", Path(config.base).expanduser())] if config.base and Path(config.base).expanduser().exists() else []
    check_folder_output(config.output_dir, [*models, *base])
    check_model_output(config.output_dir, config.overwrite)
    check_writable(config.output_dir, "--output-dir")
