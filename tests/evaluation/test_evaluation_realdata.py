"""The evaluation commands end to end on the real data, in CI time: a tiny model trained on a patient-grouped subsample of
Kermany, then ``evaluate`` (with the proxies and a small stress test), ``cv`` (3 folds), ``compare`` (2 models ×
2 strategies, run as a grid) and ``report``; each HTML opened in headless Chromium, every section shown, the
screenshot not blank."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from browser import assert_not_blank, open_in_chromium
from eval_helpers import invoke

pytestmark = [pytest.mark.realdata, pytest.mark.browser]

SMALL = ["--set", "data.max_images=240", "--set", "data.image_size=48", "--set", "data.num_workers=0",
         "--set", "trainer.device=cpu"]
SECTIONS = ["headline", "splits", "data-summary", "per-class", "confusion-matrix", "roc-pr", "calibration",
            "training-curves", "confident-errors", "generalisation", "stress-test", "config"]
CARDS = "() => [...document.querySelectorAll('section.card')].map(s => [s.id, s.getBoundingClientRect().height])"
GRID = {
    "name": "realdata-2x2",
    "description": "Two small custom CNNs by two training recipes.",
    "paper": {"claim": "not a paper: a CI check"},
    "base": {"task": "binary", "model": {"pretrained": False}, "trainer": {"epochs": 1}},
    "grid": {"model": {"simple": {"model": {"name": "simple_cnn"}}, "alrelu": {"model": {"name": "alrelu_cnn"}}},
             "strategy": {"plain": {"preset": "plain"}, "recommended": {"preset": "recommended"}}},
}


@pytest.fixture(scope="module")
def work(tmp_path_factory, real_data):
    """Train, evaluate, cross-validate, compare and report once; the tests below check the files."""
    root = tmp_path_factory.mktemp("realdata_eval")
    kermany = real_data / "chest_xray"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PNEUMOSCOPE_CACHE", str(tmp_path_factory.getbasetemp() / "pneumoscope-cache"))
        run = root / "run"
        invoke("train", "--data", kermany, "--model", "simple_cnn", "--no-pretrained", "--epochs", "1",
               "--preset", "plain", "--out", run, "--no-progress", *SMALL)
        evaluated = invoke("evaluate", run, "--data", kermany, "--split", "all", "--max-images", "150",
                           "--proxy-images", "60", "--stress-images", "20", "--severities", "3", "--bootstrap", "200",
                           "--data-root", real_data, "--no-progress")
        config = root / "cv.yaml"
        config.write_text(yaml.safe_dump({"task": "binary", "preset": "plain", "model": {"name": "simple_cnn",
                                                                                          "pretrained": False},
                                          "trainer": {"epochs": 1}}), encoding="utf-8")
        invoke("cv", config, "--folds", "3", "--out", root / "cv", "--data", kermany, "--bootstrap", "100",
               "--no-progress", *SMALL)
        grid = root / "grid.yaml"
        grid.write_text(yaml.safe_dump(GRID, sort_keys=False), encoding="utf-8")
        compared = invoke("compare", grid, "--out", root / "grids", "--data", kermany, "--no-progress", *SMALL)
        invoke("report", run, "--no-progress")
    return {"root": root, "run": run, "evaluated": evaluated, "compared": compared}


def test_evaluate_scores_unseen_kermany_images_with_proxies(work, real_data):
    folder = work["run"] / "eval-all-chest_xray"
    metrics = json.loads((folder / "metrics.json").read_text())
    manifest = pd.read_csv(work["run"] / "manifest.csv", keep_default_na=False)
    predictions = pd.read_csv(folder / "predictions.csv")
    assert 120 <= len(predictions) <= 180
    assert not set(predictions["patient_id"]) & set(manifest.loc[manifest["split"] == "train", "patient_id"])
    assert metrics["data"]["left_out"]["trained_on"] >= (manifest["split"] == "train").sum()
    assert metrics["headline"]["resampled"] == "patients"
    robustness = metrics["robustness"]
    assert robustness["unseen_site_normals"]["n"] == 60
    assert 0.0 <= robustness["unseen_site_normals"]["specificity"] <= 1.0
    assert robustness["resolution_consistency"]["n"] == 60
    assert robustness["stress_test"]["n_images"] >= 15
    assert "unseen-site normals specificity" in work["evaluated"]
    for name in ("robustness.csv", "unseen_site_normals.csv", "resolution_consistency.csv", "report.html"):
        assert (folder / name).is_file(), name


def test_cv_three_folds_on_real_data(work):
    summary = json.loads((work["root"] / "cv" / "cv_summary.json").read_text())
    assert summary["folds"] == 3 and len(summary["n_per_fold"]) == 3
    assert sum(map(sum, summary["pooled_confusion_matrix"])) == sum(summary["n_per_fold"])
    assert summary["summary"]["accuracy"]["std"] is not None


def test_compare_two_models_by_two_strategies(work):
    table = pd.read_csv(work["root"] / "grids" / "realdata-2x2" / "comparison.csv")
    assert table[["model", "strategy"]].values.tolist() == [["simple", "plain"], ["simple", "recommended"],
                                                            ["alrelu", "plain"], ["alrelu", "recommended"]]
    assert table["accuracy"].between(0, 1).all() and (table["accuracy_low"] <= table["accuracy_high"]).all()
    cell = work["root"] / "grids" / "realdata-2x2" / "alrelu__recommended"
    config = yaml.safe_load((cell / "config.yaml").read_text())
    assert config["preset"] == "recommended" and config["model"]["name"] == "alrelu_cnn"
    assert config["data"]["image_size"] == 48 and config["data"]["max_images"] == 240
    assert "| alrelu | recommended |" in work["compared"]


def test_run_report_opens_in_chromium_with_every_section(work, tmp_path):
    page = work["run"] / "report.html"
    result = open_in_chromium(page.as_uri(), tmp_path / "report.png", evaluate=CARDS)
    assert result.errors == [] and result.outside_requests == []
    shown = dict(result.evaluated)
    assert [s for s in SECTIONS if s not in shown] == [] and all(h > 40 for h in shown.values())
    assert_not_blank(result.screenshot)
    full = open_in_chromium(page.as_uri(), tmp_path / "report-full.png", full_page=True)
    assert_not_blank(full.screenshot)


@pytest.mark.parametrize("page", ["cv/cv_report.html", "grids/realdata-2x2/comparison.html"])
def test_cv_and_comparison_pages_open_in_chromium(work, tmp_path, page):
    result = open_in_chromium((work["root"] / page).as_uri(), tmp_path / "page.png", evaluate=CARDS)
    assert result.errors == [] and len(result.evaluated) >= 2
    assert all(h > 40 for _, h in result.evaluated)
    assert_not_blank(result.screenshot)
