"""Full, read-only and forbidden disks are recognised behind the exceptions libraries wrap them in."""

from __future__ import annotations

import errno
import io
import os

import pytest
import torch

from ragtrain.files.diskerrors import disk_errno, os_error_line


class FullBuffer(io.BytesIO):
    """Room for 1000 bytes, then writes fail as on a full disk."""

    def write(self, data):
        if self.tell() + len(data) > 1000:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(data)


def test_disk_errors_are_recognised_behind_library_exceptions():
    with pytest.raises(RuntimeError) as raised:
        torch.save({"x": torch.zeros(100_000)}, FullBuffer())  # torch's writer wraps the OSError in a RuntimeError
    assert disk_errno(raised.value) == errno.ENOSPC
    # safetensors (Rust) only spells the errno out in its message
    assert disk_errno(Exception("Error while serializing: I/O error: No space left on device (os error 28)")) == errno.ENOSPC
    assert disk_errno(OSError(errno.EROFS, "Read-only file system")) == errno.EROFS
    assert disk_errno(RuntimeError("shape mismatch")) is None
    assert disk_errno(OSError(errno.ENOENT, "No such file")) is None  # a bug, not a disk problem: keeps its traceback


def test_a_stray_disk_error_is_one_line_and_a_permission_error_names_no_write():
    assert os_error_line(OSError(errno.EACCES, "Permission denied", "/data/train.jsonl")) == (
        "/data/train.jsonl: permission denied; check its permissions")
    assert os_error_line(OSError(errno.ENOENT, "No such file or directory", "/x")) is None
