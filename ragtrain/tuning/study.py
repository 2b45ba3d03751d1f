"""A tune study in Optuna's storage: opened or continued (SQLite in the study directory by default, any database URL,
or a journal file), its first trial train's defaults for the kind of triples, the trials it counts (complete and
pruned), and the trials a killed process left running, given back to the queue."""

from __future__ import annotations

import os
import socket
import time
import warnings
from pathlib import Path

from ragtrain.config.train import TrainConfig
from ragtrain.config.tune import TuneConfig
from ragtrain.data.manifest import read_data_kind
from ragtrain.errors import UserError
from ragtrain.files import runlock
from ragtrain.messages import tell, warn
from ragtrain.tuning.space import Param

HEARTBEAT_S, GRACE_S = 60, 180  # database storages: a trial silent this long belongs to a dead process


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
    """Train's defaults for these triples (labelled or label-free, config.datakinds) of the searched options whose
    range holds them; Optuna samples the others."""
    defaults, first = read_data_kind(train_data).defaults, {}
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
