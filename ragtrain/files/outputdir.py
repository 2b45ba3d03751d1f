"""Where an output may go, and what --overwrite may replace: ragtrain only ever deletes what it wrote.

Refused with one line before anything is touched: any output (a file or a folder, of any command) that is an
input, holds one or sits inside one, or two outputs that overlap (check_outputs, the one rule); an output directory
that is a file system's root, the home directory, the current directory or one of its parents; and, for
--overwrite, a non-empty directory that is not an output of the same command (prepare-data: no manifest.json,
or files the manifest does not list; train: no config.json, metrics.jsonl or checkpoints/ of a run; merge: no
saved model, model/saving.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from ragtrain.errors import UserError
from ragtrain.files.atomic import is_temporary, recover_names, temp_name
from ragtrain.files.names import (
    BEST,
    CHECKPOINT_STATE,
    CHECKPOINTS,
    FINAL,
    LOCK_NAME,
    MANIFEST,
    METRICS_LOG,
    RUN_CONFIG,
    TENSORBOARD_DIR,
)

# What `train` writes in a run directory, in the order --overwrite removes it: config.json last, because it
# is what marks the directory as a run if the removal is interrupted.
RUN_ENTRIES = (CHECKPOINTS, BEST, FINAL, METRICS_LOG, RUN_CONFIG, TENSORBOARD_DIR)
REPLACED = "replaced"  # .replaced.XXXXXXXX.tmp: an overwritten run's files on their way out


Named = tuple[str, Path | None]  # (how the user named it: a flag, 'input', 'model'; its path or None)


def check_outputs(outputs: Iterable[Named], inputs: Iterable[Named]) -> None:
    """The one rule every command's pre-flight applies: no output, file or folder, may be an input, hold one or sit
    inside one, and no two outputs may be one path or one inside the other. Paths are compared resolved (symbolic
    links followed), so a link to an input is that input. Pairs whose path is None are left out."""
    given_outputs = [(flag, path) for flag, path in outputs if path is not None]
    given_inputs = [(flag, path) for flag, path in inputs if path is not None]
    for flag, output in given_outputs:
        target = output.resolve()
        for what, given in given_inputs:
            source = given.resolve()
            if source == target:
                raise UserError(f"{flag} {output} is the input {_named(what, given)}; writing it would destroy that "
                                "input, so give the output another name")
            if target in source.parents:
                raise UserError(f"{flag} {output} holds the input {_named(what, given)}; replacing it would delete "
                                "that input, so choose an output outside the inputs")
            if source in target.parents:
                raise UserError(f"{flag} {output} is inside the input {_named(what, given)}; writing there would "
                                "change that input, so choose an output outside the inputs")
    for n, (flag, output) in enumerate(given_outputs):
        for other_flag, other in given_outputs[n + 1:]:
            first, second = output.resolve(), other.resolve()
            if first == second or first in second.parents or second in first.parents:
                raise UserError(f"{flag} {output} and {other_flag} {other} are the same path or one holds the other; "
                                "give each output a place of its own")


def _named(what: str, path: Path) -> str:
    return str(path) if what == "input" else f"{path} ({what})"


def check_folder_output(output: Path, inputs: Iterable[Named], option: str = "--output-dir") -> None:
    """An output folder, which --overwrite may replace: not root, home, the current directory or above, and
    clear of every input (check_outputs)."""
    if what := _protected(output.resolve()):
        raise UserError(f"{option} {output} is {what}; give the output a folder of its own (which --overwrite may "
                        f"replace), such as {output / 'ragtrain-output'}")
    check_outputs([(option, output)], inputs)


def _protected(target: Path) -> str | None:
    """What `target` (resolved) is when it is a directory no output may replace: root, home, current or above."""
    cwd = Path.cwd().resolve()
    if target == Path(target.anchor):
        return "the root of a file system"
    with contextlib.suppress(RuntimeError, KeyError):  # no HOME and no password entry: no home directory
        if target == Path.home().resolve():
            return "your home directory"
    if target == cwd:
        return "the current directory"
    return "a parent of the current directory" if target in cwd.parents else None


def visible_entries(directory: Path) -> list[Path]:
    """A directory's entries other than ragtrain's lock and temporaries (leftovers of a killed run)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.name != LOCK_NAME and not is_temporary(p.name))


# ---- prepare-data: the output is swapped whole, so it may hold nothing but what its manifest lists

def check_prepare_output(output: Path, overwrite: bool) -> None:
    if output.is_file():
        raise UserError(f"--output-dir {output} is a file; choose a directory")
    if not visible_entries(output):
        return
    if not overwrite:
        raise UserError(f"output directory {output} is not empty; pass --overwrite or choose another --output-dir")
    listed = _manifest_files(output)
    if listed is None:
        raise UserError(f"--overwrite refused: {output} is not a prepare-data output (no {MANIFEST}), so ragtrain "
                        "will not delete it; choose another --output-dir")
    foreign = [name for name in files_under(output) if name not in listed and name != MANIFEST]
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise UserError(f"--overwrite refused: {output} holds {foreign[0]}{more}, which prepare-data did not write "
                        "(the whole folder is replaced); move it out or choose another --output-dir")


def _manifest_files(output: Path) -> set[str] | None:
    """The files a prepare-data manifest lists, or None when there is no readable manifest."""
    try:
        manifest = json.loads((output / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    listed = manifest.get("sha256") if isinstance(manifest, dict) else None
    return set(listed) if isinstance(listed, dict) else None


def files_under(root: Path) -> list[str]:
    """Every file below `root` (symbolic links included, not followed), as sorted POSIX relative paths."""
    found = []
    for folder, folders, files in os.walk(root):
        here = Path(folder)
        found += [(here / name).relative_to(root).as_posix() for name in files]
        found += [(here / name).relative_to(root).as_posix() for name in folders if (here / name).is_symlink()]
    return sorted(found)


# ---- train: a run directory is written piece by piece; --overwrite removes the pieces, nothing else

def check_run_output(output: Path, overwrite: bool) -> None:
    """A new run (not --resume) may start in a missing or empty directory, or replace a run with --overwrite."""
    if not visible_entries(output):
        return
    if not is_run_directory(output):
        raise UserError(f"{'--overwrite refused: ' if overwrite else ''}{output} is not empty and holds no ragtrain "
                        "run (no run's config.json, metrics.jsonl or checkpoints/), so ragtrain will not use it; "
                        "choose another --output-dir")
    if not overwrite:
        raise UserError(f"output directory {output} already holds a run; pass --resume to continue it, --overwrite "
                        "to replace it, or choose another --output-dir")


def is_run_directory(output: Path) -> bool:
    """Whether `output` holds a training run: its config.json, a checkpoint, or a metrics log."""
    try:
        config = json.loads((output / RUN_CONFIG).read_text(encoding="utf-8"))
        if isinstance(config, dict) and "train_data" in config and "output_dir" in config:
            return True
    except (OSError, ValueError):
        pass
    checkpoints = output / CHECKPOINTS
    if checkpoints.is_dir() and any((p / CHECKPOINT_STATE).is_file() for p in checkpoints.iterdir()):
        return True
    try:
        with (output / METRICS_LOG).open(encoding="utf-8") as handle:
            first = json.loads(handle.readline())
        return isinstance(first, dict) and "step" in first
    except (OSError, ValueError):
        return False


def clear_run(output: Path) -> None:
    """Remove a run's own entries (RUN_ENTRIES) for --overwrite; anything else in the directory stays.

    They are moved into one temporary folder first, then deleted: a kill half-way leaves them in a folder that
    the next run removes, and never a half-deleted checkpoint that --resume could pick.
    """
    present = [output / name for name in RUN_ENTRIES if os.path.lexists(output / name)]
    if not present:
        return
    trash = temp_name(output / REPLACED)
    trash.mkdir()
    for path in present:
        os.rename(path, trash / path.name)
    shutil.rmtree(trash, ignore_errors=True)


def recover_run(output: Path) -> list[str]:
    """Clean up the run directory's own temporaries left by a killed run (checkpoints/ is checkpoint.py's)."""
    return recover_names(output, lambda name: name in RUN_ENTRIES or name == REPLACED)
