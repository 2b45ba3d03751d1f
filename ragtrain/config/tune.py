"""tune's options: its own (TuneOptions) and every train option a trial may start from, one frozen TuneConfig.
validate() reads no disk."""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ragtrain.config.common import require
from ragtrain.config.options import option
from ragtrain.config.train import TrainConfig
from ragtrain.files.names import TRIALS

# -------------------------------------------------------------------------------------------------- tune
TUNE_NOT_FROM_TRAIN = ("output_dir", "resume", "overwrite", "average_last", "defaulted")  # each trial sets its own
STUDY, SEARCH = "Study", "Search space"  # --help panels of tune's own options; train's keep theirs
RANGE_FLAGS = {"lr_range": "learning_rate", "epochs_range": "epochs", "temperature_range": "temperature",
               "warmup_range": "warmup_ratio"}


def parse_bounds(flag: str) -> Callable[[str | None], tuple[float, float] | None]:
    """'1e-5,1e-4' -> (1e-5, 1e-4): a search range's low and high; one value fixes the option."""

    def parse(value: str | None) -> tuple[float, float] | None:
        if value is None:
            return None
        try:
            numbers = [float(v) for v in value.split(",")]
        except ValueError:
            numbers = []
        require(len(numbers) in (1, 2) and all(math.isfinite(n) for n in numbers),
               f"{flag} must be LOW,HIGH (or one value to fix it) such as 1e-5,1e-4, got {value!r}")
        return (numbers[0], numbers[-1])

    return parse


@dataclass(frozen=True)
class TuneOptions:
    """tune's own options; TuneConfig adds every train option (the same fields, defaults and help) after them."""

    output_dir: Path = option(help="The study directory: trials/trial-NNNN/ (each a training run), results.csv, "
        "results.json, plots and best/ (the best trial's model).", panel=STUDY, decls=("--output-dir", "-o"))
    n_trials: int = option(20, "Trials in all, complete and pruned, across every process and earlier invocation: "
        "running tune again continues to this number.", panel=STUDY)
    timeout: float | None = option(None, "Start no trial after this many seconds (the running one finishes).",
                                   panel=STUDY)
    study: str = option("ragtrain", "Study name in --storage; processes given the same storage and name share its "
        "trials.", panel=STUDY)
    storage: str | None = option(None, "Optuna storage: a database URL or a journal file's path (a disk several "
        "machines share). Default: sqlite:///OUTPUT_DIR/study.db.", panel=STUDY)
    space: Path | None = option(None, "Search space file (JSON or TOML): option -> {type: float|int|categorical, "
        "low, high, log, choices}; replaces the default space.", panel=SEARCH)
    lr_range: tuple[float, float] | None = option(None, "Learning-rate range LOW,HIGH (log-uniform); one value "
        "fixes it. Default 1e-5,2e-4.", panel=SEARCH, cli_type=Optional[str], parse=parse_bounds("--lr-range"))
    epochs_range: tuple[float, float] | None = option(None, "Epochs range LOW,HIGH (integers). Default 1,3.",
        panel=SEARCH, cli_type=Optional[str], parse=parse_bounds("--epochs-range"))
    temperature_range: tuple[float, float] | None = option(None, "Temperature range LOW,HIGH (log-uniform). "
        "Default 0.02,0.1.", panel=SEARCH, cli_type=Optional[str], parse=parse_bounds("--temperature-range"))
    warmup_range: tuple[float, float] | None = option(None, "Warmup-ratio range LOW,HIGH. Default 0,0.3.",
        panel=SEARCH, cli_type=Optional[str], parse=parse_bounds("--warmup-range"))
    pruning: bool = option(True, "Stop a trial whose validation falls below the median of earlier trials at the "
        "same step (Optuna's MedianPruner).", panel=SEARCH, decls=("--pruning/--no-pruning",))
    keep_best: int = option(0, "Keep the model folders of the best K finished trials only (logs stay); 0: every "
        "trial's.", panel=STUDY)


class _TuneChecks:
    """TuneConfig's checks (a base class: TuneConfig is made from TuneOptions' and TrainConfig's fields)."""

    def train_fields(self) -> dict:
        """The train options every trial starts from (a searched one is then replaced by the trial's value)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(TrainConfig) if f.name not in TUNE_NOT_FROM_TRAIN}

    def validate(self) -> "TuneConfig":
        require(self.eval_data is not None, "tune needs --eval-data (the eval/ folder from 'ragtrain prepare-data' "
                                           "and --eval-split): the trials are compared on its validation metric")
        require(self.n_trials >= 1, f"--n-trials must be at least 1, got {self.n_trials}")
        require(self.timeout is None or self.timeout > 0, f"--timeout must be positive, got {self.timeout}")
        require(self.keep_best >= 0, f"--keep-best must be 0 (keep all) or more, got {self.keep_best}")
        require(bool(self.study.strip()), "--study must not be empty; give the study a name")
        require(self.space is None or not any(getattr(self, flag) for flag in RANGE_FLAGS),
               "--space and the --*-range flags both define the search space; pass one")
        self.trial_config().validate()  # every trial's options, checked once here
        return self

    def trial_config(self) -> TrainConfig:
        """A trial's train options before its searched values: the study's, with the trials folder as its output."""
        return TrainConfig(**self.train_fields(), output_dir=self.output_dir / TRIALS)


def _tune_fields() -> list[tuple]:
    """TuneOptions' fields, then every train option but those a trial sets itself, as make_dataclass reads them."""
    fields = []
    for config_class, skip in ((TuneOptions, ()), (TrainConfig, TUNE_NOT_FROM_TRAIN)):
        hints = typing.get_type_hints(config_class)
        for f in dataclasses.fields(config_class):
            if f.name not in skip:
                fields.append((f.name, hints[f.name], dataclasses.field(default=f.default, metadata=f.metadata)))
    return fields


# keyword-only: tune's required --output-dir and train's required --train-data need no place in the order
TuneConfig = dataclasses.make_dataclass("TuneConfig", _tune_fields(), bases=(_TuneChecks,), frozen=True, kw_only=True)
