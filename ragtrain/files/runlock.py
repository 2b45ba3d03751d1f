"""One `train` per run directory: a lock file there holding the holder's pid and host.

The file is locked with flock, which the kernel releases when the holder exits however it exits (SIGKILL
too): a lock file that nobody holds was left by a run that is gone, and is taken over with a note. Where the
file system has no flock (some network mounts), the pid decides: a live pid on this host holds the lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from ragtrain.errors import UserError
from ragtrain.files.names import LOCK_NAME

try:
    import fcntl
except ImportError:  # Windows: the pid alone decides
    fcntl = None

LOCK_RECORD_BYTES = 4096  # read of a lock file: its pid, host and start time fit many times over


@dataclass
class RunLock:
    path: Path
    fd: int
    created: list[Path] = field(default_factory=list)  # folders made for the run, removed on release while empty


def acquire(run_dir: Path) -> tuple[RunLock, str | None]:
    """Lock `run_dir` (created if missing) for this process; the note says when a dead run's lock was taken over.

    A live holder is a UserError naming it. Creating the folder is undone by `release` if nothing else was
    written in it, so a run refused later (bad data, a model that does not load) leaves no trace.
    """
    created = _make_dirs(run_dir)
    path = run_dir / LOCK_NAME
    try:
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            previous = _read(fd)
            if not _lock(fd, previous):
                os.close(fd)
                raise UserError(f"{run_dir} is in use by another 'ragtrain train' ({_describe(previous)}); wait for it "
                                f"to finish or choose another --output-dir (if no such run exists, delete {path})")
            if _same_file(fd, path):
                break
            os.close(fd)  # the holder removed the file between our open and lock: lock the new one
    except BaseException:
        _remove_empty(created)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode(), 0)
    note = f"took over the lock of a run that is gone ({_describe(previous)})" if previous else None
    return RunLock(path, fd, created), note


def release(lock: RunLock) -> None:
    """Remove the lock file (ours: unlink before close, so no one locks a file that is on its way out)."""
    try:
        if _same_file(lock.fd, lock.path):
            lock.path.unlink(missing_ok=True)
    finally:
        os.close(lock.fd)
        _remove_empty(lock.created)


def _lock(fd: int, previous: dict) -> bool:
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        except OSError:  # no flock here: fall back on the pid
            pass
    return not holder_alive(previous)


def holder_alive(previous: dict) -> bool:
    pid, host = previous.get("pid"), previous.get("host")
    if not isinstance(pid, int) or pid == os.getpid():
        return False
    if host != socket.gethostname():
        return True  # cannot tell from here: assume it is running
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _read(fd: int) -> dict:
    """The holder recorded in the lock file; {} for an empty or unreadable one."""
    with contextlib.suppress(OSError, ValueError):
        content = json.loads(os.pread(fd, LOCK_RECORD_BYTES, 0) or b"{}")
        return content if isinstance(content, dict) else {}
    return {}


def _describe(holder: dict) -> str:
    if not holder:
        return "holder unknown"
    return f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"


def _same_file(fd: int, path: Path) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _make_dirs(directory: Path) -> list[Path]:
    """mkdir -p, returning the folders it created, deepest first."""
    missing = []
    while not directory.exists() and directory != directory.parent:
        missing.append(directory)
        directory = directory.parent
    for folder in reversed(missing):
        folder.mkdir(exist_ok=True)
    return missing


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:  # deepest first
        try:
            folder.rmdir()
        except OSError:  # not empty (the run wrote something) or gone: leave it
            return
