"""ragtrain report: one self-contained page whose embedded plots are the PNGs beside it, the runs' options side by
side, the evaluation table with changes; user errors as one line with nothing written; and the page rendered in a
real headless Chromium is not blank."""

from __future__ import annotations

import base64
import json
import math
import os
import re
import shutil
import subprocess

import pytest
from PIL import Image
from typer.testing import CliRunner

from ragtrain.cli import app
from ragtrain.commands.report import report
from ragtrain.config.report import ReportConfig
from tests.conftest import user_error
from tests.test_reportdata import RUN_A, RUN_B

runner = CliRunner()


def write_run(directory, rows, options):
    directory.mkdir(parents=True)
    (directory / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (directory / "config.json").write_text(json.dumps(options))
    return directory


@pytest.fixture
def inputs(tmp_path):
    a = write_run(tmp_path / "run-a", RUN_A, {"epochs": 1, "learning_rate": 2e-5})
    b = write_run(tmp_path / "run-b", RUN_B, {"epochs": 1, "learning_rate": 8e-5})
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"data": {"eval_data": "eval", "split": "dev", "queries": 3, "corpus": 5},
                                   "models": {"base": {"metrics": {"ndcg@10": 0.68, "recall@10": 0.81}},
                                              "tuned": {"metrics": {"ndcg@10": 0.75, "recall@10": 0.80},
                                                        "precision": "bf16"}}}))
    return a, b, results


def test_the_page_embeds_the_pngs_written_beside_it(tmp_path, inputs):
    a, b, results = inputs
    result = runner.invoke(app, ["report", str(a), str(b), "--eval", str(results), "-o", str(tmp_path / "out" / "r.html")])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "out" / "r.html").read_text()
    plots = tmp_path / "out" / "r_plots"
    names = ["training.png", "diagnostics.png", "validation.png", "evaluation.png"]
    assert sorted(p.name for p in plots.iterdir()) == sorted(names)
    embedded = [base64.b64decode(data) for data in re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)]
    assert embedded == [(plots / name).read_bytes() for name in names]  # in the page's order, byte for byte
    assert "src='http" not in page and "<script" not in page  # self-contained
    assert "<tr class=differs><td>learning_rate</td><td>2e-05</td><td>8e-05</td></tr>" in page
    assert "<tr><td>epochs</td><td>1</td><td>1</td></tr>" in page
    # what differs in the open and first; what the runs share folded away after it
    assert page.index("<td>learning_rate</td>") < page.index("<details><summary>the 1 option the runs share") \
        < page.index("<td>epochs</td>")
    assert "<td>tuned</td><td class='num'>0.7500 <span class='up'>+0.0700</span></td>" in page
    assert "<span class='down'>-0.0100</span>" in page
    assert "split dev: 3 queries, 5 documents; dense models encoded in bf16</p>" in page
    with Image.open(plots / "training.png") as image:  # 6 panels: 3 columns x 2 rows of 4.6 x 3.0 inches at 100 dpi
        assert image.size == (1380, 600)


def test_an_evaluation_alone_and_extra_figures(tmp_path, inputs):
    _, _, results = inputs
    extra = tmp_path / "trials.png"
    Image.new("RGB", (20, 10), "red").save(extra)
    out = report(ReportConfig(evals=(results,), output=tmp_path / "e.html"), extra=[("Tuning trials", extra)])
    page = out.read_text()
    assert "<h2>Tuning trials</h2>" in page and base64.b64encode(extra.read_bytes()).decode() in page
    assert sorted(p.name for p in (tmp_path / "e_plots").iterdir()) == ["evaluation.png", "extra-1-trials.png"]
    assert "Training curves" not in page


def test_a_tune_study_joins_the_page_as_its_plots(tmp_path, inputs):
    study = tmp_path / "study"
    study.mkdir()
    rows = [{"trial": n, "state": state, "value": value, "learning_rate": lr, "epochs": 1, "steps": 10, "seconds": 9.0}
            for n, (state, value, lr) in enumerate([("COMPLETE", 0.70, 2e-5), ("PRUNED", 0.66, 1e-4),
                                                    ("COMPLETE", 0.74, 5e-5)])]
    (study / "results.json").write_text(json.dumps(rows))
    result = runner.invoke(app, ["report", "--study", str(study), "-o", str(tmp_path / "t.html")])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "t.html").read_text()
    pngs = sorted(p.name for p in (tmp_path / "t_plots").iterdir())
    assert len(pngs) >= 1 and all(p.startswith("extra-") for p in pngs)
    for name in pngs:  # each plot is embedded in the page, byte for byte
        assert base64.b64encode((tmp_path / "t_plots" / name).read_bytes()).decode() in page
    assert f"({study})</h2>" in page
    assert "has no results.json" in user_error(["report", "--study", str(tmp_path / "run-a"), "-o", str(tmp_path / "u.html")])


@pytest.mark.parametrize("problem, expected", [
    ("nothing", "nothing to report"),
    ("no-metrics", "has no metrics.jsonl"),
    ("bad-results", "no models with metrics in it"),
    ("bad-row", "metrics.jsonl:1: not valid JSON"),
    ("plots-dir-used", "holds files that are not a report's plots"),
])
def test_user_errors_are_one_line_and_write_nothing(tmp_path, inputs, problem, expected):
    a, _, results = inputs
    args = {"nothing": [], "no-metrics": [str(tmp_path)], "bad-results": [str(a), "--eval", str(a / "config.json")],
            "bad-row": [str(a)], "plots-dir-used": [str(a)]}[problem]
    if problem == "bad-row":
        (a / "metrics.jsonl").write_text("{oops\n" + (a / "metrics.jsonl").read_text())
    if problem == "plots-dir-used":
        (tmp_path / "r_plots").mkdir()
        (tmp_path / "r_plots" / "notes.txt").write_text("mine")
    assert expected in user_error(["report", *args, "-o", str(tmp_path / "r.html")])
    assert not (tmp_path / "r.html").exists()
    assert problem == "plots-dir-used" or not (tmp_path / "r_plots").exists()


def test_a_run_cut_short_by_a_kill_is_drawn_without_its_last_line(tmp_path, inputs):
    a, _, _ = inputs
    (a / "metrics.jsonl").write_text((a / "metrics.jsonl").read_text() + '{"step": 3, "lo')
    assert report(ReportConfig(runs=(a,), output=tmp_path / "r.html")).is_file()


def test_matplotlib_missing_is_one_line_naming_the_extra(tmp_path, inputs, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    assert "pip install 'ragtrain[report]'" in user_error(["report", str(inputs[0]), "-o", str(tmp_path / "r.html")])


BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.slow
@pytest.mark.skipif(BROWSER is None, reason="no headless browser (chromium) installed")
def test_the_page_renders_in_a_headless_browser_and_is_not_blank(tmp_path, inputs):
    a, b, results = inputs
    page = report(ReportConfig(runs=(a, b), evals=(results,), output=tmp_path / "r.html"))
    shot = tmp_path / "shot.png"
    profile = tmp_path / "profile"
    profile.mkdir()
    command = [BROWSER, "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", f"--screenshot={shot}", "--window-size=1400,2400", page.as_uri()]
    if os.geteuid() == 0:
        command.insert(1, "--no-sandbox")  # Chromium's sandbox refuses to run as root
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    with Image.open(shot) as image:
        gray = image.convert("L")
        assert image.size == (1400, 2400)
        histogram = gray.histogram()
    dark = sum(histogram[:128]) / sum(histogram)  # text, axes and curves
    coloured = len(set(Image.open(shot).convert("RGB").getdata()))
    assert dark > 0.01 and coloured > 50  # a blank (white) page has neither; a broken image shows no curves


@pytest.mark.parametrize("content, words", [
    ("", "holds no row"),
    ('{"step": 0, "loss": "abc"}\n{"step": 1, "loss": 1.0}\n', 'metrics.jsonl:1: loss is "abc", not a number'),
    ('{"step": 0, "loss": true}\n', "metrics.jsonl:1: loss is true, not a number"),
    ('not json\n{"step": 1}\n', "metrics.jsonl:1: not valid JSON"),
])
def test_a_metrics_log_report_cannot_draw_is_one_line(tmp_path, content, words):
    """An empty or corrupt metrics.jsonl, or a value that is no number, was drawn silently (or not at all)."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text(content)
    line = user_error(["report", str(tmp_path / "run"), "-o", str(tmp_path / "report.html")])
    assert words in line and not (tmp_path / "report.html").exists()


def test_non_finite_values_are_drawn_as_gaps_and_counted_in_a_warning(tmp_path, capsys):
    from ragtrain.reporting.page import read_metrics

    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": NaN}\n{"step": 2, "loss": Infinity}\n'
                                            '{"step": 3, "loss": 0.5}\n')
    rows = read_metrics(tmp_path)
    assert len(rows) == 3 and math.isnan(rows[0]["loss"])
    assert "2 values are not finite (loss 2); they are gaps in the plots" in capsys.readouterr().err


@pytest.mark.parametrize("value", ['"abc"', "NaN", "null", "[0.5]"])
def test_an_eval_metric_that_is_no_finite_number_is_one_line(tmp_path, value):
    """A string metric in --eval was a traceback while drawing."""
    results = tmp_path / "r.json"
    results.write_text('{"models": {"bm25": {"metrics": {"ndcg@10": %s}}}}' % value)
    line = user_error(["report", "--eval", str(results), "-o", str(tmp_path / "report.html")])
    assert f'model "bm25" has ndcg@10 {value}, not a finite number' in line
