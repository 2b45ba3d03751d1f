"""tune: an Optuna study whose trials are train runs, compared on the validation metric of --eval-data.

The first trial of a new study runs train's defaults for the triples (labelled or label-free, datadefaults.py) where
the space holds them; every other trial draws its options from the search space (tunespace.py) with TPE, trains in
its own directory (OUTPUT_DIR/trials/trial-NNNN) in this process, and reports every validation to Optuna, whose
median pruner may stop it there. The study lives in Optuna's storage (SQLite in the study directory by default, a
journal file or a database server to share it), so several processes, on one machine or many, pull trials from one
study, and tune run again with the same arguments continues it: a trial left RUNNING by a killed process of this
host is marked failed and run again. At the end the results table, plots and best/ are written (tuneresults.py).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from ragtrain.commands.preflight import check_tune
from ragtrain.config.train import TrainConfig
from ragtrain.config.tune import TuneConfig
from ragtrain.errors import UserError
from ragtrain.files.names import TRIALS
from ragtrain.messages import tell, warn
from ragtrain.tuning.results import finish_study, keep_best_models
from ragtrain.tuning.space import Param, search_space, suggest
from ragtrain.tuning.study import StopAt, counted_trials, open_study, retry_interrupted


def require_optuna():
    try:
        import optuna
    except ImportError:
        raise UserError("ragtrain tune needs Optuna; install with pip install 'ragtrain[tune]'") from None
    # a trial's own lines say what happens to it; Optuna's (a traceback per failed trial) show with --verbose
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def tune(config: TuneConfig) -> Path:
    """Run (or continue) the study until it holds --n-trials finished trials or --timeout passes; the study
    directory with its results is returned."""
    config.validate()
    check_tune(config)
    space = search_space(config)  # a bad space fails here, before the storage is touched
    optuna = require_optuna()
    config.output_dir.mkdir(parents=True, exist_ok=True)
    study = open_study(optuna, config, space)
    retry_interrupted(optuna, study)
    if counted_trials(optuna, study) < config.n_trials:
        study.optimize(lambda trial: objective(optuna, trial, config, space), timeout=config.timeout,
                       catch=(UserError,), gc_after_trial=True,
                       callbacks=[StopAt(optuna, config.n_trials), lambda s, t: keep_best_models(optuna, s, config)])
    else:
        tell(f"the study {config.study!r} already holds {config.n_trials} complete or pruned trials; raise --n-trials "
             "to run more")
    return finish_study(optuna, study, config, space)


def objective(optuna, trial, config: TuneConfig, space: tuple[Param, ...]) -> float:
    """One train run with the trial's values; every validation reported (and maybe pruned); its best figure."""
    run_dir = config.output_dir / TRIALS / f"trial-{trial.number:04d}"
    trial.set_user_attr("pid", os.getpid())
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("dir", str(run_dir))
    values = suggest(trial, space)
    train_config = TrainConfig(**(config.train_fields() | values), output_dir=run_dir)
    tell(f"trial {trial.number}: " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                                 for k, v in values.items()))
    metric, seen, pruned = train_config.selection_metric, {}, []

    def on_validation(step: int, results: dict) -> bool:
        seen[step] = results[metric]
        trial.set_user_attr("steps", step)
        if step == 0:  # the base model: the same in every trial, nothing to compare
            return False
        trial.report(results[metric], step)
        pruned.extend([step] if trial.should_prune() else [])
        return bool(pruned)

    from ragtrain.commands.train import train

    try:
        train(train_config, on_validation=on_validation)
    except UserError as exc:  # this trial's own failure (e.g. diverged): recorded, and the study goes on
        trial.set_user_attr("error", str(exc))
        warn(f"trial {trial.number} failed: {exc}")
        raise
    best = max(seen.values()) if metric != "val_loss" else min(seen.values())
    trial.set_user_attr("best", best)
    if pruned:
        tell(f"trial {trial.number} pruned at step {pruned[0]}: {metric} {seen[pruned[0]]:.4f} is below the median")
        raise optuna.TrialPruned()
    return best
