"""A fork server for the crash tests: imports ragtrain once, then runs each `ragtrain` command in a forked child,
a real process that a test can SIGKILL at any moment, or that kills itself at a chosen call.

Importing torch and transformers takes seconds; forking a process that has imported them (and run nothing)
takes milliseconds, so a test can afford dozens of killed runs. Nothing here is in ragtrain: the kill points
are monkeypatches applied in the child only.

Requests on stdin, one JSON object a line; replies on stdout, one JSON object a line:
  {"run": ["train", ...], "log": PATH, "kill": [SPEC, ...], "pause": SPEC}  ->  {"pid": PID}
  {"wait": PID}                                                            ->  {"pid": PID, "status": S}
S is the exit code, or minus the signal that ended the child (-9 for SIGKILL). A SPEC names a function and a
call: {"target": "torch:save", "n": 2, "match": "step-6", "when": "before"} kills the child at the 2nd call of
torch.save whose path arguments contain "step-6" (a list: each of its strings), before the call runs ("after":
once it has returned).
"pause" takes the same SPEC plus "dir": at that call the child creates DIR/paused and waits for DIR/go.
"fake": [[TARGET, VALUE], ...] replaces functions by ones that return VALUE, e.g. ["ragtrain.files.atomic:_exchange",
false] for a file system that cannot swap two directories in one step.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import transformers.models.bert.modeling_bert  # noqa: E402,F401

import ragtrain.cli  # noqa: E402,F401  (everything a command imports, before the first fork)
import ragtrain.commands.evaluate  # noqa: E402,F401
import ragtrain.commands.prepare  # noqa: E402,F401
import ragtrain.commands.train  # noqa: E402,F401


def _patch(spec: dict, action) -> None:
    """Wrap spec["target"] ("module:attribute") so that its n-th matching call runs `action` before or after it."""
    module, attribute = _resolve(spec["target"])
    original = getattr(module, attribute)
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        hit = False
        paths = " ".join(str(a) for a in (*args, *kwargs.values()) if isinstance(a, (str, os.PathLike)))
        wanted = spec.get("match", "")
        if all(part in paths for part in ([wanted] if isinstance(wanted, str) else wanted)):
            calls["n"] += 1
            hit = calls["n"] == spec["n"]
        if hit and spec.get("when", "before") == "before":
            action()
        result = original(*args, **kwargs)
        if hit and spec.get("when") == "after":
            action()
        return result

    setattr(module, attribute, wrapper)


def _resolve(target: str):
    module_name, attribute = target.split(":")
    return importlib.import_module(module_name), attribute


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _pause(folder: Path) -> None:
    (folder / "paused").touch()
    deadline = time.monotonic() + 300
    while not (folder / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.02)


def _child(request: dict) -> None:
    """In the forked child: output to the log, kill points in place, then the command as `ragtrain` runs it."""
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    for target, value in request.get("fake", []):
        module, attribute = _resolve(target)
        setattr(module, attribute, lambda *args, value=value, **kwargs: value)
    for spec in request.get("kill", []):
        _patch(spec, _kill)
    if request.get("pause"):
        folder = Path(request["pause"]["dir"])
        _patch(request["pause"], lambda: _pause(folder))
    code = 0
    try:
        ragtrain.cli.app(args=request["run"], prog_name="ragtrain", standalone_mode=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        if "wait" in request:
            _, status = os.waitpid(request["wait"], 0)
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            reply = {"pid": request["wait"], "status": code}
        else:
            pid = os.fork()
            if pid == 0:
                _child(request)
            reply = {"pid": pid}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
