"""A tune study in Optuna's storage: opened or continued (SQLite in the study directory by default, any database URL,
or a journal file), its first trial train's defaults for the kind of triples, the trials it counts (complete and
pruned: a failed trial does not count, and FAILED_IN_A_ROW failures in a row stop the study, since the options or
the machine are at fault rather than the draw), and the trials a killed process left running, recorded as killed
and given back to the queue."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from ragtrain.config.train import TrainConfig
from ragtrain.config.tune import TuneConfig
from ragtrain.data.manifest import read_data_kind
from ragtrain.errors import UserError
from ragtrain.files import runlock
from ragtrain.messages import tell, warn
from ragtrain.tuning.space import Param

HEARTBEAT_S, GRACE_S = 60, 180  # database storages: a trial silent this long belongs to a dead process
FAILED_IN_A_ROW = 3  # trials in a row that failed with an error of their own: the study stops
KILLED = "killed"  # the user attribute (and results' state) of a trial whose process is gone


class StopAt:
    """Stop the study once it holds `n` counted trials (across every process sharing it), or once its last
    FAILED_IN_A_ROW finished trials all failed with an error of their own."""

    def __init__(self, optuna, n: int) -> None:
        self.optuna, self.n = optuna, n

    def __call__(self, study, trial) -> None:
        if counted_trials(self.optuna, study) >= self.n:
            study.stop()
        elif failing(self.optuna, study):
            warn(f"the last {FAILED_IN_A_ROW} trials failed; the study stops: fix what they report (results.csv, "
                 "column error) and run tune again")
            study.stop()


def counted_trials(optuna, study) -> int:
    """Trials that count towards --n-trials: complete and pruned ones (a failed one does not, nor one interrupted
    or killed, which is run again)."""
    states = optuna.trial.TrialState
    return sum(1 for t in study.get_trials(deepcopy=False) if t.state in (states.COMPLETE, states.PRUNED))


def failing(optuna, study) -> bool:
    """Whether the last FAILED_IN_A_ROW finished trials (by number) all failed with an error of their own."""
    states = optuna.trial.TrialState
    finished = [t for t in study.get_trials(deepcopy=False) if t.state in (states.COMPLETE, states.PRUNED, states.FAIL)]
    last = sorted(finished, key=lambda t: t.number)[-FAILED_IN_A_ROW:]
    return len(last) == FAILED_IN_A_ROW and all(t.state == states.FAIL and "error" in t.user_attrs for t in last)


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
    except ValueError as exc:  # a journal file whose lines are not Optuna's records
        raise UserError(f"--storage {config.storage}: Optuna cannot read it ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''}); give a new file name, a journal a study "
                        "wrote, or a database URL") from None
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
    if "://" not in url:
        require_journal(Path(url).expanduser())
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


def require_journal(path: Path) -> None:
    """A journal file that exists must hold Optuna's records (one JSON object with an op_code per line): any other
    file would fail deep inside Optuna, after the study directory is made."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with path.open("rb") as handle:
        first = handle.readline(1 << 20)
    try:
        record = json.loads(first)
    except ValueError:
        record = None
    if not (isinstance(record, dict) and "op_code" in record):
        raise UserError(f"--storage {path} is not an Optuna journal file (its first line is no journal record); give "
                        "a new file name, a journal a study wrote, or a database URL such as sqlite:///study.db")


def fail_killed(optuna, study) -> None:
    """Trials this host's killed processes left RUNNING are recorded as killed and marked failed."""
    states = optuna.trial.TrialState
    for trial in study.get_trials(deepcopy=False, states=(states.RUNNING,)):
        if _owner_dead(trial):
            study._storage.set_trial_user_attr(trial._trial_id, KILLED, True)
            study._storage.set_trial_state_values(trial._trial_id, state=states.FAIL)
            warn(f"trial {trial.number} was left running by a process that is gone (pid {trial.user_attrs['pid']}); "
                 "recorded as killed")


def retry_interrupted(optuna, study) -> None:
    """Trials a killed process left RUNNING are recorded as such (fail_killed); every trial interrupted (Ctrl-C, a
    kill) that has not been retried yet is queued again with its parameters, so the study continues where it
    stopped."""
    fail_killed(optuna, study)
    trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))
    retried = {t.user_attrs.get("retry_of") for t in study.get_trials(deepcopy=False)}
    for trial in trials:
        if "error" not in trial.user_attrs and trial.number not in retried and trial.params:
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
            tell(f"trial {trial.number} was interrupted; it runs again with the same parameters")


def _owner_dead(trial) -> bool:
    attrs = trial.user_attrs
    return attrs.get("host") == socket.gethostname() and not runlock.holder_alive(attrs)
