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
import time
import warnings
from pathlib import Path

from ragtrain.config.commands import TrainConfig, TuneConfig
from ragtrain.config.datakinds import defaults_for
from ragtrain.errors import UserError
from ragtrain.files import runlock
from ragtrain.files.names import TRIALS
from ragtrain.messages import tell, warn
from ragtrain.tuning.results import finish_study, keep_best_models
from ragtrain.tuning.space import Param, search_space, suggest

HEARTBEAT_S, GRACE_S = 60, 180  # database storages: a trial silent this long belongs to a dead process


def require_optuna():
    try:
        import optuna
    except ImportError:
        raise UserError("ragtrain tune needs Optuna; install with pip install 'ragtrain[tune]'") from None
    return optuna


def tune(config: TuneConfig) -> Path:
    """Run (or continue) the study until it holds --n-trials finished trials or --timeout passes; the study
    directory with its results is returned."""
    config.validate()
    space = search_space(config)  # a bad space fails here, before the storage is touched
    optuna = require_optuna()
    config.output_dir.mkdir(parents=True, exist_ok=True)
    study = open_study(optuna, config, space)
    retry_interrupted(optuna, study)
    if counted_trials(optuna, study) < config.n_trials:
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # each trial's own output says what happens
        study.optimize(lambda trial: objective(optuna, trial, config, space), timeout=config.timeout,
                       catch=(UserError,), gc_after_trial=True,
                       callbacks=[StopAt(optuna, config.n_trials), lambda s, t: keep_best_models(optuna, s, config)])
    else:
        tell(f"the study {config.study!r} already holds {config.n_trials} finished trials; raise --n-trials to run more")
    return finish_study(optuna, study, config, space)


class StopAt:
    """Stop the study once it holds `n` counted trials (across every process sharing it)."""

    def __init__(self, optuna, n: int) -> None:
        self.optuna, self.n = optuna, n

    def __call__(self, study, trial) -> None:
        if counted_trials(self.optuna, study) >= self.n:
            study.stop()


def counted_trials(optuna, study) -> int:
    """Trials that count towards --n-trials: complete and pruned ones, and those that failed with an error of
    their own (a diverged run); not those interrupted or killed, which are run again."""
    states = optuna.trial.TrialState
    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.state in (states.COMPLETE, states.PRUNED) or (t.state == states.FAIL and "error" in t.user_attrs))


def open_study(optuna, config: TuneConfig, space: tuple[Param, ...]):
    """The study in --storage (created the first time, with train's defaults queued as its first trial),
    maximising the metric (minimising val_loss)."""
    metric = TrainConfig(**config.train_fields(), output_dir=config.output_dir).selection_metric
    direction = "minimize" if metric == "val_loss" else "maximize"
    storage = open_storage(optuna, config.storage or f"sqlite:///{(config.output_dir / 'study.db').resolve()}")
    # a trial is pruned below the median of at least two finished trials at the same step
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2) if config.pruning else optuna.pruners.NopPruner()
    kwargs = dict(storage=storage, study_name=config.study, direction=direction, pruner=pruner)
    try:  # the process that creates the study samples from --seed: one process, same seed, same trials
        study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=config.seed), **kwargs)
        first = defaults_in_space(config.train_data, space)
        if first:  # the run a user gets without tune is the yardstick, and the study's best is never below it
            study.enqueue_trial(first, user_attrs={"defaults": True})
    except optuna.exceptions.DuplicatedStudyError:
        # one that joins it (another process, or a continued study) from a seed of its own: processes seeded
        # alike would draw the same parameters, trial for trial
        seed = (config.seed + os.getpid() * 7919) % 2**32
        study = optuna.load_study(sampler=optuna.samplers.TPESampler(seed=seed), study_name=config.study,
                                  storage=storage, pruner=pruner)
    if study.direction.name.lower() != direction:
        raise UserError(f"study {config.study!r} in the storage was made to {study.direction.name.lower()} its metric "
                        f"and this one would {direction}; use another --study name or the same --metric")
    study.set_user_attr("metric", metric)
    return study


def defaults_in_space(train_data: Path, space: tuple[Param, ...]) -> dict:
    """Train's defaults for these triples (labelled or label-free, datadefaults.py) of the searched options whose
    range holds them; Optuna samples the others."""
    defaults, first = defaults_for(train_data).values, {}
    for p in space:
        value = defaults.get(p.name)
        if value is None:
            continue
        if (p.choices and value in p.choices) or (not p.choices and p.low <= value <= p.high):
            first[p.name] = value
    return first


def open_storage(optuna, url: str, attempts: int = 3):
    """A database URL (with '://') as an RDB storage with heartbeats; anything else as a journal file's path.
    Processes started together on a new database race to create its tables, so a failure is tried again."""
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: experimental since 2.x
    for attempt in range(attempts):
        try:
            if "://" not in url:
                from optuna.storages.journal import JournalFileBackend, JournalStorage

                return JournalStorage(JournalFileBackend(str(Path(url).expanduser())))
            retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)
            return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                                              heartbeat_stale_trial_callback=retry)
        except (ImportError, OSError, ValueError) as exc:  # no driver, a folder that is not there, a malformed URL
            error = exc
            break
        except Exception as exc:  # SQLAlchemy's own errors (a refused connection, a table another process made)
            error = exc
            time.sleep(0.5 + attempt)
    line = str(error).splitlines()[0] if str(error) else ""
    raise UserError(f"--storage {url}: Optuna cannot open it ({type(error).__name__}: {line}); give "
                    "sqlite:///path/study.db, a database URL, or a journal file path in a folder that exists")


def retry_interrupted(optuna, study) -> None:
    """Trials this host's killed processes left RUNNING are marked failed; every trial interrupted (Ctrl-C, a kill)
    that has not been retried yet is queued again with its parameters, so the study continues where it stopped."""
    states = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    for trial in trials:
        if trial.state == states.RUNNING and _owner_dead(trial):
            study._storage.set_trial_state_values(trial._trial_id, state=states.FAIL)
            warn(f"trial {trial.number} was left running by a process that is gone (pid {trial.user_attrs['pid']}); "
                 "marked failed")
        elif trial.state != states.FAIL:
            continue
        if "error" not in trial.user_attrs and trial.number not in retried and trial.params:
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
            tell(f"trial {trial.number} was interrupted; it runs again with the same parameters")


def _owner_dead(trial) -> bool:
    attrs = trial.user_attrs
    return attrs.get("host") == socket.gethostname() and not runlock.holder_alive(attrs)


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
