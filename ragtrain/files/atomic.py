"""Crash-safe writes: every output is built under a temporary name beside its final place and renamed in whole,
so a reader (or the run after a killed one) finds the old copy or the new one, never half of either. The names used:

  .NAME.XXXXXXXX.tmp      a copy being built, or an old copy swapped out and being deleted: always removable
  .NAME.XXXXXXXX.old.tmp  the old copy renamed aside where the file system cannot swap two directories in one
                          step; while NAME is missing it is the only complete copy, so `recover` puts it back

A writer holds an flock on its temporary while it works, so `recover` never removes one that is still in use.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import hashlib
import json
import os
import re
import secrets
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from ragtrain.errors import UserError
from ragtrain.files.diskerrors import DISK_ERRORS, raise_if_disk_error

try:
    import fcntl
except ImportError:  # Windows: no flock; temporaries of a live writer are then not protected from `recover`
    fcntl = None

TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}(?P<old>\.old)?\.tmp$")
AT_FDCWD, RENAME_EXCHANGE = -100, 2
PROBE = "ragtrain-probe"  # .ragtrain-probe.XXXXXXXX.tmp: check_writable's test file
PROBE_BYTES = 4096  # one block: a full disk refuses it even where an empty file still fits
TEMP_TOKEN_BYTES = 4  # random bytes in a temporary's name: the 8 hex characters TEMP_NAME expects
HASH_BLOCK_BYTES = 1 << 20  # read at a time to hash a file: training data can be large


def atomic_write_text(path: Path, text: str) -> None:
    """Write text to a temporary file beside `path`, then rename: readers never see half a file."""
    atomic_write_with(path, lambda handle: handle.write(text.encode("utf-8")))


def atomic_write_with(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """`write(handle)` fills a temporary file beside `path` (opened in binary), which then replaces `path` whole.
    A full, read-only or forbidden disk is a WriteError naming `path`; any failure leaves no temporary."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        write(handle)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """The name of a new temporary file beside `path` (created empty and locked), for a writer that needs a name
    rather than a handle (a memory-mapped array); it replaces `path` whole when the block ends, and is removed on any
    failure, a full or read-only disk being a WriteError naming `path`."""
    tmp, fd = None, None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        recover(path)  # temporaries of a write that was killed
        tmp, fd = _create_temp(path, directory=False)
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise_if_disk_error(exc, path)
        raise
    finally:
        if fd is not None:
            os.close(fd)


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


@contextlib.contextmanager
def atomic_directory(final: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary directory beside `final`; on success it replaces `final` whole, on error it is
    removed. A kill at any moment leaves `final` complete, old or new (or the old copy set aside, which the
    next `recover` puts back); leftovers of an earlier killed write of `final` are cleaned up first.

    `final` must not exist, or be empty, or `overwrite` must be set.
    """
    if final.exists() and not final.is_dir():
        raise UserError(f"output {final} exists and is not a directory; choose another --output-dir")
    recover(final)
    if final.is_dir() and any(final.iterdir()) and not overwrite:
        raise UserError(f"output directory {final} is not empty; pass --overwrite or choose another --output-dir")
    tmp, fd = None, None
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp, fd = _create_temp(final, directory=True)
        yield tmp
        normal_permissions(tmp)
        _swap_in(tmp, final)
    except BaseException as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise_if_disk_error(exc, final)
        raise
    finally:
        if fd is not None:
            os.close(fd)


def _swap_in(new: Path, final: Path) -> None:
    """Put the complete directory `new` at `final`; the old copy, if any, is deleted last."""
    if not os.path.lexists(final):
        os.rename(new, final)
    elif _exchange(new, final):  # one atomic step: `final` is the new copy, `new`'s temporary name the old one
        shutil.rmtree(new, ignore_errors=True)
    else:
        aside = temp_name(final, old=True)
        os.rename(final, aside)
        try:
            os.rename(new, final)
        except BaseException:
            os.rename(aside, final)  # the new copy cannot go in: the old one goes back at once
            raise
        shutil.rmtree(aside, ignore_errors=True)


@functools.cache
def _renameat2():
    if not sys.platform.startswith("linux"):
        return None
    function = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if function is not None:
        function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return function


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where the system or file system cannot."""
    function = _renameat2()
    if function is None:
        return False
    if function(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def temp_name(final: Path, old: bool = False) -> Path:
    return final.parent / f".{final.name}.{secrets.token_hex(TEMP_TOKEN_BYTES)}{'.old' if old else ''}.tmp"


def _create_temp(final: Path, directory: bool) -> tuple[Path, int]:
    """A new temporary beside `final` (mode 0777/0666 less the umask) and an open, flocked descriptor on it."""
    while True:
        tmp = temp_name(final)
        try:
            if directory:
                os.mkdir(tmp, 0o777)
                fd = os.open(tmp, os.O_RDONLY)
            else:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        if fcntl is not None:
            with contextlib.suppress(OSError):  # no flock on this file system: just unprotected
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return tmp, fd


def _in_use(path: Path) -> bool:
    """Whether a live writer holds `path` (its flock); a killed one's lock went with it."""
    if fcntl is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


def recover(final: Path) -> list[str]:
    """Clean up after a killed write of `final`: an old copy set aside whose new copy never arrived is put back,
    every other temporary of `final` (half-built, or old and already replaced) is removed. Only names of the
    form above, for `final`'s own name, are touched. Returns a note for each copy put back."""
    parent, notes = final.parent, []
    if not final.name or not parent.is_dir():
        return notes
    leftovers = [p for p in parent.iterdir() if (m := TEMP_NAME.match(p.name)) and m["name"] == final.name]
    for path in sorted(leftovers, key=lambda p: not p.name.endswith(".old.tmp")):  # set-aside copies first
        if _in_use(path):
            continue
        if path.name.endswith(".old.tmp") and not os.path.lexists(final):
            os.rename(path, final)
            notes.append(f"put back {final}, set aside by a run that was killed before its new copy arrived")
        elif path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return notes


def recover_names(directory: Path, is_ours) -> list[str]:
    """`recover` for every name in `directory` that has leftovers and that `is_ours(name)` accepts."""
    if not directory.is_dir():
        return []
    names = {m["name"] for p in directory.iterdir() if (m := TEMP_NAME.match(p.name))}
    return [note for name in sorted(names) if is_ours(name) for note in recover(directory / name)]


def is_temporary(name: str) -> bool:
    return TEMP_NAME.match(name) is not None


def current_umask() -> int:
    """The process's umask, read without changing it where Linux shows it (os.umask alone must set one)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def normal_permissions(root: Path) -> None:
    """Folders 0777 and files 0666 less the umask, as `mkdir` and `open` give: temporary folders and some
    libraries' files (transformers' safetensors) are created private (0700/0600), which would keep a
    teammate from reading a saved model."""
    mask = current_umask()
    for folder, _, files in os.walk(root):
        os.chmod(folder, 0o777 & ~mask)
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, 0o666 & ~mask)


def check_writable(directory: Path, option: str) -> None:
    """Create and delete a small file where `option`'s output will go (`directory`, or its nearest existing
    parent), so a read-only, full or pseudo file system (/proc) is one clear line before any work starts."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{option}: {existing} is a file, not a folder; choose another path")
    probe, fd = None, None
    try:
        recover(existing / PROBE)  # probes of a process killed right here
        probe, fd = _create_temp(existing / PROBE, directory=False)
        os.write(fd, b"\0" * PROBE_BYTES)
    except OSError as exc:
        reason = DISK_ERRORS.get(exc.errno, exc.strerror or str(exc))
        raise UserError(f"{option}: cannot write in {existing} ({reason}); choose another location") from None
    finally:
        if fd is not None:
            os.close(fd)
        if probe is not None:
            probe.unlink(missing_ok=True)


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read a block at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(HASH_BLOCK_BYTES):
            digest.update(block)
    return digest.hexdigest()
