"""`ragtrain tune` in a process of its own with a scripted train in place of the real one, for the tests of
several processes on one study and of a killed study: each trial's run writes its directory and reports the
validations its learning rate maps to, fast.

    python tests/tune_runner.py READY_DIR MODE -- ragtrain tune arguments...

MODE: 'wait2' (the first trial waits until two runners are up, so both pull trials), 'hang' (trial 1 blocks until
the process is killed), or 'plain'.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def scripted_train(ready: Path, mode: str):
    calls = []

    def train(config, on_validation=None):
        calls.append(config.output_dir)
        config.output_dir.mkdir(parents=True)  # fails if two trials ever shared a directory
        (config.output_dir / "owner").write_text(str(os.getpid()))
        if mode == "wait2" and len(calls) == 1:
            deadline = time.time() + 60
            while len(list(ready.glob("ready-*"))) < 2 and time.time() < deadline:
                time.sleep(0.05)
        if mode == "hang" and config.output_dir.name == "trial-0001":
            (ready / "hanging").write_text(str(os.getpid()))
            time.sleep(600)
        for step in (1, 2):
            if on_validation(step, {"ndcg@10": config.learning_rate * 1000, "recall@10": 0.5}):
                break
        (config.output_dir / "final").mkdir()
        return config.output_dir / "final"

    return train


def main() -> None:
    ready, mode, *rest = sys.argv[1:]
    args = rest[rest.index("--") + 1:]
    import ragtrain.commands.train

    ragtrain.commands.train.train = scripted_train(Path(ready), mode)
    (Path(ready) / f"ready-{os.getpid()}").write_text("")
    from ragtrain.cli import app

    app(args, standalone_mode=True)


if __name__ == "__main__":
    main()
