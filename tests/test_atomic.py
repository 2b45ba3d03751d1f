"""Crash-safe writes: whole replacement, recovery of what a killed write left, permissions, full and
read-only disks."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from ragtrain.errors import UserError
from ragtrain.files import atomic
from ragtrain.files.atomic import atomic_directory, atomic_write_text, check_writable, normal_permissions, recover
from ragtrain.files.diskerrors import WriteError
from ragtrain.model.loading import load_encoder
from ragtrain.model.saving import save_encoder
from tests.conftest import file_bytes, write_files


@pytest.mark.parametrize("exchange", [True, False], ids=["swap", "set-aside"])
def test_a_directory_is_replaced_whole_and_nothing_is_left_beside_it(tmp_path, monkeypatch, exchange):
    if not exchange:  # a file system without renameat2's exchange: the old copy goes aside first
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    final = write_files(tmp_path / "out", {"old.txt": "old", "sub/deep.txt": "old"})
    with atomic_directory(final, overwrite=True) as tmp:
        write_files(tmp, {"new.txt": "new"})
        assert file_bytes(final) == {"old.txt": b"old", "sub/deep.txt": b"old"}  # untouched until the end
    assert file_bytes(final) == {"new.txt": b"new"}
    assert os.listdir(tmp_path) == ["out"]


def test_a_failed_write_keeps_the_old_copy(tmp_path):
    final = write_files(tmp_path / "out", {"old.txt": "old"})
    with pytest.raises(RuntimeError), atomic_directory(final, overwrite=True) as tmp:
        write_files(tmp, {"new.txt": "new"})
        raise RuntimeError("the writer failed")
    assert file_bytes(final) == {"old.txt": b"old"} and os.listdir(tmp_path) == ["out"]


# What a kill leaves at each moment of a replacement, and what `recover` (the next run) makes of it.
STATES = {
    "building the new copy": ({"out": "old", ".out.abcd1234.tmp": "half"}, "old"),
    "swapped, old not yet deleted": ({"out": "new", ".out.abcd1234.tmp": "old"}, "new"),
    "old set aside, new not yet in": ({".out.abcd1234.old.tmp": "old", ".out.efgh5678.tmp": "new"}, "old"),
    "new in, old set aside being deleted": ({"out": "new", ".out.abcd1234.old.tmp": "half"}, "new"),
}
NOT_OURS = [".other.abcd1234.tmp", ".out.tmp", "out.abcd1234.tmp", ".out.abc.tmp", ".out.abcd1234.tmp.keep", "notes.txt"]


@pytest.mark.parametrize("state", list(STATES))
def test_recover_leaves_one_whole_copy_and_only_touches_its_own_names(tmp_path, state):
    left, expected = STATES[state]
    for name, content in left.items():
        write_files(tmp_path / name, {"marker.txt": content})
    for name in NOT_OURS:
        (tmp_path / name).write_text("the user's")
    notes = recover(tmp_path / "out")
    assert file_bytes(tmp_path / "out") == {"marker.txt": expected.encode()}
    assert sorted(os.listdir(tmp_path)) == sorted(["out", *NOT_OURS])
    assert all((tmp_path / name).read_text() == "the user's" for name in NOT_OURS)
    assert len(notes) == (state == "old set aside, new not yet in")


def test_recover_leaves_a_live_writers_temporary_alone(tmp_path):
    final = write_files(tmp_path / "out", {"old.txt": "old"})
    with atomic_directory(final, overwrite=True) as tmp:
        write_files(tmp, {"new.txt": "new"})
        recover(final)  # another process cleaning up while this one writes: its flock protects the temporary
        assert file_bytes(tmp) == {"new.txt": b"new"}
    assert file_bytes(final) == {"new.txt": b"new"}


def test_atomic_write_text_cleans_up_a_killed_write_of_the_same_file(tmp_path):
    (tmp_path / ".results.json.abcd1234.tmp").write_text("half")
    (tmp_path / ".other.json.abcd1234.tmp").write_text("another file's")
    atomic_write_text(tmp_path / "results.json", "{}")
    assert sorted(os.listdir(tmp_path)) == [".other.json.abcd1234.tmp", "results.json"]


# ---- permissions: what mkdir and open would give under the umask, also for files libraries make private

@pytest.fixture(params=[0o022, 0o077], ids=["umask022", "umask077"])
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def modes(folder: Path) -> set[tuple[str, int]]:
    return {("dir" if p.is_dir() else "file", stat.S_IMODE(p.stat().st_mode)) for p in [folder, *folder.rglob("*")]}


def test_saved_models_and_outputs_get_the_permissions_of_the_umask(tmp_path, tiny_model, umask):
    encoder = load_encoder(str(tiny_model))
    save_encoder(encoder, tmp_path / "final")  # transformers writes its weights 0600
    assert (tmp_path / "final" / "model.safetensors").is_file()
    assert modes(tmp_path / "final") == {("dir", 0o777 & ~umask), ("file", 0o666 & ~umask)}
    atomic_write_text(tmp_path / "results.json", "{}")
    assert stat.S_IMODE((tmp_path / "results.json").stat().st_mode) == 0o666 & ~umask


def test_normal_permissions_leaves_links_alone(tmp_path):
    target = tmp_path / "target.txt"
    target.write_text("x")
    target.chmod(0o600)
    folder = tmp_path / "folder"
    folder.mkdir(mode=0o700)
    (folder / "link").symlink_to(target)
    normal_permissions(folder)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600  # a link's target is not ours to change


# ---- full, read-only and forbidden places

class FullDisk:
    """A file object whose writes fail as on a full disk, after writing part of the data."""

    def __init__(self, handle):
        self.handle = handle

    def write(self, data):
        self.handle.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()


def test_a_full_disk_while_writing_a_file_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    path.write_text("old")
    monkeypatch.setattr(atomic, "open", lambda *a, **k: FullDisk(open(*a, **k)), raising=False)
    with pytest.raises(WriteError, match=r"cannot write .*results.json: no space left on the device; free some space"):
        atomic_write_text(path, "new" * 1000)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["results.json"]


def test_a_full_disk_while_writing_a_directory_names_the_output(tmp_path):
    final = write_files(tmp_path / "out", {"old.txt": "old"})
    with pytest.raises(WriteError, match="out: no space left on the device") as raised:
        with atomic_directory(final, overwrite=True) as tmp:
            with open(tmp / "big.bin", "wb") as handle:
                FullDisk(handle).write(b"x" * 100)
    assert raised.value.errno == errno.ENOSPC and "\n" not in str(raised.value)
    assert file_bytes(final) == {"old.txt": b"old"} and os.listdir(tmp_path) == ["out"]


def test_check_writable_refuses_pseudo_file_systems_and_files_in_the_path(tmp_path):
    with pytest.raises(UserError, match=r"--output-dir: cannot write in /proc \(No such file or directory\)"):
        check_writable(Path("/proc/ragtrain/run"), "--output-dir")
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(UserError, match="is a file, not a folder"):
        check_writable(tmp_path / "a-file" / "run", "--output-dir")
    (tmp_path / ".ragtrain-probe.abcd1234.tmp").write_text("")  # left by a process killed while probing
    check_writable(tmp_path / "new" / "deeper", "--output-dir")  # the nearest existing folder is probed
    assert sorted(os.listdir(tmp_path)) == ["a-file"]  # and the probes are gone


def test_check_writable_refuses_a_read_only_folder(tmp_path):
    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o555)
    if os.access(folder, os.W_OK):
        pytest.skip("running as root: chmod does not stop writes")
    with pytest.raises(UserError, match="cannot write in .*read-only.*permission denied"):
        check_writable(folder / "run", "--output-dir")
