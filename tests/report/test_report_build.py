"""The report of a trained run, built from its files: ``pneumoscope report`` on a run never evaluated (it scores the
validation split first), on an evaluation of two sources (per-source table, shortcut audit), with ``--filters``,
and opened in headless Chromium."""

from __future__ import annotations

import re
import shutil

import pytest
from browser import assert_not_blank, open_in_chromium
from PIL import Image
from typer.testing import CliRunner

from pneumoscope.cli.main import app
from pneumoscope.errors import DataError
from pneumoscope.evaluation.evaluate import evaluate
from pneumoscope.evaluation.reporting import write_run_report

HEADINGS = re.compile(r'<section class="card" id="([a-z0-9-]+)">')
ALWAYS = ["headline", "splits", "data-summary", "per-class", "scope", "confusion-matrix", "roc-pr", "calibration",
          "training-curves", "confident-errors", "generalisation", "config"]


def sections_of(page: str) -> list[str]:
    return HEADINGS.findall(page)


@pytest.fixture
def run(tiny_report_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(tiny_report_run, copy)
    return copy


def test_report_of_a_run_never_evaluated_scores_its_validation_split(run):
    result = CliRunner().invoke(app, ["report", str(run), "--filters", "--no-progress"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    page = (run / "report.html").read_text()
    assert (run / "eval-val" / "metrics.json").is_file()
    assert sections_of(page) == ALWAYS[:-1] + ["filters", "config"]
    assert "the val split of the run&#x27;s manifest" in page and "optimistic" in page
    assert "pneumoscope robustness RUN_DIR" in page  # why the proxies are missing, and how to get them
    assert page.count("data:image/png;base64,") >= 8 and "http://" not in page and "https://" not in page


def test_report_of_two_sources_has_per_source_results_and_the_shortcut_audit(run, tiny_kermany, tmp_path,
                                                                             make_xray):
    other = tmp_path / "adults"
    for folder, sick in (("NORMAL", False), ("PNEUMONIA", True)):
        (other / folder).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(make_xray(48, seed=50 + i, pneumonia=sick)).save(other / folder / f"a{i}.png")
    out = evaluate(run, [tiny_kermany, f"adults={other}"], "all", proxies=False, n_boot=50, progress=False)
    assert out.name == "eval-all-chest_xray"
    page = (out / "report.html").read_text()
    found = sections_of(page)
    assert "per-source" in found and "shortcut-audit" in found
    assert "pixels 32x32" in page and "features (" in page  # audits from the pixels and the model's features
    rebuilt = write_run_report(run, tmp_path / "again.html", eval_name=out.name, gradcam=False)
    assert sections_of(rebuilt.read_text()) == found


def test_unknown_evaluation_name_lists_the_known_ones(run):
    evaluate(run, split="val", proxies=False, n_boot=20, progress=False, report=False)
    with pytest.raises(DataError, match="found: eval-val"):
        write_run_report(run, eval_name="eval-nothing")


@pytest.mark.browser
def test_evaluation_report_opens_in_chromium_with_every_section(run, tmp_path):
    out = evaluate(run, split="test", n_boot=50, stress_images=6, severities=(3,), proxies=True,
                   data_root=tmp_path / "no-data", progress=False)
    page = out / "report.html"
    result = open_in_chromium(page.as_uri(), tmp_path / "report.png", evaluate=(
        "() => [...document.querySelectorAll('section.card')].map(s => [s.id, s.getBoundingClientRect().height])"))
    assert result.errors == [] and result.outside_requests == []
    shown = dict(result.evaluated)
    assert set(ALWAYS + ["stress-test"]) <= set(shown) and all(h > 40 for h in shown.values())
    assert_not_blank(result.screenshot)
