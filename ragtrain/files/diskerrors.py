"""Full, read-only and forbidden disks: recognised behind whatever exception a library raises, and told to the
user in one line (they can fix them: free space, choose another place), never as a traceback."""

from __future__ import annotations

import errno
import re
from pathlib import Path

from ragtrain.errors import UserError

# Errors the user can fix by freeing space or choosing another place, with what to tell them.
DISK_ERRORS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}
ERRNO_IN_TEXT = re.compile(r"os error (\d+)|\[Errno (\d+)\]")  # Rust (safetensors) and Python spellings


class WriteError(UserError):
    """An output could not be written (disk full, read-only, no permission); nothing was left half-written."""

    def __init__(self, code: int, target: Path):
        super().__init__(f"cannot write {target}: {DISK_ERRORS[code]}; {_advice(code)} (nothing was left half-written)")
        self.errno = code


def _advice(code: int) -> str:
    return "free some space and run again" if code in (errno.ENOSPC, errno.EDQUOT) else "choose a location you can write to"


def os_error_line(exc: OSError) -> str | None:
    """One line for a full, read-only or forbidden file that no writer above turned into a WriteError (it may
    be a read: a file without read permission), else None: any other OSError is a bug and keeps its traceback."""
    code = disk_errno(exc)
    if code is None:
        return None
    advice = _advice(code) if code in (errno.ENOSPC, errno.EDQUOT, errno.EROFS) else "check its permissions"
    return f"{exc.filename or 'a file'}: {DISK_ERRORS[code]}; {advice}"


def disk_errno(exc: BaseException) -> int | None:
    """The errno of a disk-full, read-only or permission error behind `exc` (its own, a cause's, or one that a
    library only spelled out in its message, as safetensors does), else None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        code = getattr(exc, "errno", None)
        if code in DISK_ERRORS:
            return code
        match = ERRNO_IN_TEXT.search(str(exc))
        if match and int(match.group(1) or match.group(2)) in DISK_ERRORS:
            return int(match.group(1) or match.group(2))
        exc = exc.__cause__ or exc.__context__
    return None


def raise_if_disk_error(exc: BaseException, target: Path) -> None:
    """Raise a one-line WriteError naming `target` when `exc` comes from a full, read-only or forbidden place."""
    code = disk_errno(exc)
    if code is not None:
        raise WriteError(code, target) from None
