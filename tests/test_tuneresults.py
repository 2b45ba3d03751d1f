"""A study's results: the same rows in results.json and results.csv, the printed table's cells, and which folder
of a trial run holds its model."""

from __future__ import annotations

import csv
import json

from rich.console import Console

from ragtrain.tuning.results import model_of, results_table, write_results
from ragtrain.tuning.space import Param

SPACE = (Param("learning_rate", "float", 1e-5, 1e-4, log=True), Param("epochs", "int", 1, 3))
ROWS = [{"trial": 0, "state": "COMPLETE", "value": 0.74123, "learning_rate": 2.5e-05, "epochs": 2, "steps": 46,
         "seconds": 411.4, "dir": "trials/trial-0000", "error": None},
        {"trial": 1, "state": "PRUNED", "value": 0.7012, "learning_rate": 9e-05, "epochs": 1, "steps": 12,
         "seconds": None, "dir": "trials/trial-0001", "error": None}]


def test_json_and_csv_hold_the_same_rows(tmp_path):
    write_results(tmp_path, ROWS)
    assert json.loads((tmp_path / "results.json").read_text()) == ROWS
    with (tmp_path / "results.csv").open() as handle:
        read = list(csv.DictReader(handle))
    assert [r["trial"] for r in read] == ["0", "1"] and read[0]["learning_rate"] == "2.5e-05" and read[1]["seconds"] == ""
    write_results(tmp_path, [])  # no trial yet: an empty table, not a crash
    assert json.loads((tmp_path / "results.json").read_text()) == [] and (tmp_path / "results.csv").read_text() == ""


def test_the_table_shows_each_trial_with_its_figures():
    console = Console(width=200, record=True)
    console.print(results_table(ROWS, SPACE, "sci"))
    text = console.export_text()
    assert "tune study 'sci': 2 trials" in text
    assert "0.7412" in text and "2.5e-05" in text and "PRUNED" in text and "411" in text


def test_a_trial_runs_model_is_best_then_final(tmp_path):
    assert model_of(tmp_path) is None
    for name in ("final", "best"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
        assert model_of(tmp_path) == tmp_path / name


def test_huge_and_tiny_numbers_keep_four_significant_digits():
    """A learning rate of 1e30 filled the table with 31 digits."""
    console = Console(width=200, record=True)
    rows = [dict(ROWS[0], learning_rate=1e30, value=None, state="FAIL"), dict(ROWS[1], learning_rate=-2.5e7)]
    console.print(results_table(rows, SPACE, "sci"))
    text = console.export_text()
    assert "1e+30" in text and "-2.5e+07" in text and "1000000" not in text


def test_plots_of_a_study_without_a_finished_trial_raise_no_matplotlib_warning(tmp_path):
    import warnings

    from ragtrain.tuning.studyplots import write_plots

    failed = [dict(ROWS[0], state="FAIL", value=None), dict(ROWS[1], state="FAIL", value=None)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "No artists with labels found to put in legend" was one
        written = write_plots(failed, ["learning_rate", "epochs"], tmp_path)
    assert [path.name for path, _ in written] == ["tune_params.png", "tune_history.png"]
