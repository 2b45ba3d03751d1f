"""The run directory's lock: held by one process, released however it ends, taken over when its holder is gone.
(Two real `train` processes on one directory: tests/test_crash.py.)"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ragtrain.errors import UserError
from ragtrain.files import runlock
from ragtrain.files.names import LOCK_NAME
from ragtrain.files.runlock import acquire, release

HOLD = """
import sys
from pathlib import Path
from ragtrain.files.runlock import acquire, release
lock, _ = acquire(Path(sys.argv[1]))
print("locked", flush=True)
sys.stdin.read()  # hold the lock until the test closes stdin (then release it), or kills this process
release(lock)
"""


def holder(run: Path) -> subprocess.Popen:
    """Another process holding the lock on `run`."""
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True, env=env)
    assert process.stdout.readline() == "locked\n"
    return process


def test_the_lock_records_its_holder_and_is_gone_after_release(tmp_path):
    lock, note = acquire(tmp_path)
    content = json.loads((tmp_path / LOCK_NAME).read_text())
    assert note is None and content["pid"] == os.getpid() and content["host"] == socket.gethostname()
    release(lock)
    assert os.listdir(tmp_path) == []


@pytest.mark.slow  # starts a process
def test_a_held_lock_refuses_a_second_taker_naming_the_holder(tmp_path):
    process = holder(tmp_path / "run")
    try:
        with pytest.raises(UserError, match=rf"in use by another 'ragtrain train' \(pid {process.pid} on "):
            acquire(tmp_path / "run")
    finally:
        process.stdin.close()
        process.wait(timeout=60)
    lock, note = acquire(tmp_path / "run")  # released by the holder
    assert note is None
    release(lock)


@pytest.mark.slow  # starts a process
def test_a_killed_holders_lock_is_taken_over_with_a_note(tmp_path):
    process = holder(tmp_path)
    process.kill()
    process.wait(timeout=60)
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == process.pid  # the file outlives its holder
    lock, note = acquire(tmp_path)
    assert note.startswith(f"took over the lock of a run that is gone (pid {process.pid} on ")
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    release(lock)


def test_without_flock_a_live_pid_holds_the_lock_and_a_dead_one_does_not(tmp_path, monkeypatch):
    monkeypatch.setattr(runlock, "fcntl", None)  # e.g. a network file system without locks
    live, dead = os.getppid(), 2**22 + 12345  # above Linux's largest pid
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": live, "host": socket.gethostname()}))
    with pytest.raises(UserError, match=f"pid {live} "):
        acquire(tmp_path)
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": dead, "host": socket.gethostname()}))
    lock, note = acquire(tmp_path)
    assert f"pid {dead} " in note
    release(lock)


def test_folders_made_for_a_refused_or_empty_run_are_removed(tmp_path):
    lock, _ = acquire(tmp_path / "a" / "b" / "run")
    release(lock)
    assert os.listdir(tmp_path) == []
    lock, _ = acquire(tmp_path / "a" / "run")
    (tmp_path / "a" / "run" / "config.json").write_text("{}")
    release(lock)
    assert os.listdir(tmp_path / "a" / "run") == ["config.json"]  # the run wrote something: kept
