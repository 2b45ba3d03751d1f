"""metrics.jsonl: a fresh run starts it anew, a resumed one keeps the lines up to its checkpoint's step."""

from __future__ import annotations

import json

from ragtrain.training.runlog import log_row, metrics_log


def test_resume_drops_a_metrics_line_cut_short_by_a_kill(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in (1, 2, 3, 4)) + '{"step": 5, "lo')
    with metrics_log(tmp_path, 3) as log:  # resuming from step 3
        log_row(log, {"step": 4, "loss": 0.5})
    assert [json.loads(line) for line in path.read_text().splitlines()] == [
        {"step": 1, "loss": 1.0}, {"step": 2, "loss": 1.0}, {"step": 3, "loss": 1.0}, {"step": 4, "loss": 0.5}]


def test_a_fresh_run_starts_the_log_anew_and_only_rank_0_writes(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 9}) + "\n")
    with metrics_log(tmp_path, 0) as log:
        log_row(log, {"step": 1, "loss": 0.25})
        log_row(None, {"step": 1, "loss": 99.0})  # another rank: no handle, nothing written
        assert (tmp_path / "metrics.jsonl").read_text() == '{"step": 1, "loss": 0.25}\n'  # flushed at once


def test_every_row_reaches_every_tracker_at_its_step_without_the_step_itself(tmp_path):
    class Recorder:
        def __init__(self):
            self.calls = []

        def log(self, step, scalars):
            self.calls.append((step, scalars))

    first, second = Recorder(), Recorder()
    with metrics_log(tmp_path, 0, [first, second]) as log:
        log_row(log, {"step": 2, "epoch": 0, "loss": 0.5, "lr": 1e-5})
        log_row(log, {"step": 2, "epoch": 0, "ndcg@10": 0.75})
    assert first.calls == second.calls == [(2, {"epoch": 0.0, "loss": 0.5, "lr": 1e-5}), (2, {"epoch": 0.0, "ndcg@10": 0.75})]
