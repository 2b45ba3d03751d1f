"""The plots of a tune study: one panel per searched option and the best value over trials, as PNG files."""

from __future__ import annotations

import json

import pytest

from ragtrain.tuning.studyplots import write_study_plots

pytest.importorskip("matplotlib")


def test_a_study_directory_gets_its_two_plots_with_titles(tmp_path):
    rows = [{"trial": n, "state": state, "value": value, "learning_rate": lr, "epochs": epochs, "steps": 10,
             "seconds": 1.0, "dir": None, "error": None}
            for n, (state, value, lr, epochs) in enumerate([("COMPLETE", 0.70, 2e-5, 1), ("PRUNED", 0.61, 1e-5, 2),
                                                            ("FAIL", None, 3e-4, 1), ("COMPLETE", 0.74, 8e-5, 2)])]
    (tmp_path / "results.json").write_text(json.dumps(rows))
    written = write_study_plots(tmp_path)
    assert [(p.name, title) for p, title in written] == [
        ("tune_params.png", "Validation metric against each searched option"),
        ("tune_history.png", "Best validation metric over trials")]
    for path, _ in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json", "tune_history.png", "tune_params.png"]
