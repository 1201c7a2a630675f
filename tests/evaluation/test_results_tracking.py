"""Results logged to a tracked run: ``pneumoscope evaluate --log-to`` and ``compare --log-to`` (read back through
MLflow's client), the flat figures of a metrics.json, and a clear error for a run that is not tracked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from tiny_runs import TINY, train_tiny
from typer.testing import CliRunner

import pneumoscope as ps
from pneumoscope.cli.main import app
from pneumoscope.evaluation.tracking import evaluation_figures, model_card
from pneumoscope.paths import CACHE_ENV
from pneumoscope.training.config import deep_merge
from pneumoscope.training.tracking import read_tracking

runner = CliRunner()


@pytest.fixture(scope="module")
def tracked_run(tiny_kermany, tmp_path_factory) -> Path:
    """A one-epoch run logged to an MLflow file store, without the end-of-training evaluation."""
    root = tmp_path_factory.mktemp("tracked-report")
    config = deep_merge(TINY, {"data": {"paths": [str(tiny_kermany)]},
                               "tracking": {"loggers": ["mlflow"], "mlflow_uri": str(root / "mlruns"),
                                            "evaluate": False}})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(root / "cache"))
        return ps.train(config, root / "run", progress=False)


def mlflow_run(run_dir: Path):
    record = read_tracking(run_dir)["mlflow"]
    client = MlflowClient(record["tracking_uri"])
    return client, client.get_run(record["run_id"])


def test_evaluate_log_to_adds_the_evaluation_to_the_same_mlflow_run(tracked_run):
    result = runner.invoke(app, ["evaluate", str(tracked_run), "--split", "val", "--no-proxies", "--bootstrap", "50",
                                 "--out", str(tracked_run / "eval-again"), "--log-to", str(tracked_run),
                                 "--no-progress"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    client, run = mlflow_run(tracked_run)
    headline = json.loads((tracked_run / "eval-again" / "metrics.json").read_text())["headline"]
    assert run.data.metrics["eval-again/macro_f1"] == pytest.approx(headline["macro_f1"]["value"])
    assert run.data.metrics["eval-again/roc_auc_ci_high"] == pytest.approx(headline["roc_auc"]["high"])
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "eval-again")}
    assert {"eval-again/metrics.json", "eval-again/report.html", "eval-again/predictions.csv"} <= logged


def test_compare_log_to_adds_the_comparison_files(tracked_run, tmp_path):
    result = runner.invoke(app, ["compare", str(tracked_run), "--out", str(tmp_path / "cmp"), "--log-to",
                                 str(tracked_run), "--no-progress"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    client, run = mlflow_run(tracked_run)
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "comparison")}
    assert logged == {"comparison/comparison.csv", "comparison/comparison.md", "comparison/comparison.html"}


def test_log_to_an_untracked_run_is_a_clear_error(tiny_kermany, tmp_path, isolated_cache):
    run = train_tiny(tmp_path / "plain", tiny_kermany, isolated_cache)
    result = runner.invoke(app, ["evaluate", str(run), "--split", "val", "--no-proxies", "--bootstrap", "20",
                                 "--log-to", str(run), "--no-progress"])
    assert result.exit_code != 0
    assert "this run is not tracked" in str(result.exception) and "tracking.loggers" in str(result.exception)
    assert not (run / "eval-val").exists()  # refused before the evaluation, not after it


def test_evaluation_figures_are_flat_numbers_with_ci_bounds_and_skip_what_is_missing():
    metrics = {
        "headline": {"accuracy": {"value": 0.9, "low": 0.85, "high": 0.95},
                     "roc_auc": {"value": None, "low": None, "high": None},
                     "per_class": {"pneumonia": {"sensitivity": {"value": 0.8, "low": 0.7, "high": 0.9}}}},
        "calibration": {"ece": 0.04, "brier": 0.1, "temperature": 1.2},
        "data": {"n": 40},
        "robustness": {"unseen_site_normals": {"skipped": "not asked for"},
                       "stress_test": {"clean_accuracy": 0.9, "worst": {"accuracy": 0.5}}},
    }
    assert evaluation_figures(metrics) == {
        "accuracy": 0.9, "accuracy_ci_low": 0.85, "accuracy_ci_high": 0.95, "sensitivity_pneumonia": 0.8,
        "sensitivity_pneumonia_ci_low": 0.7, "sensitivity_pneumonia_ci_high": 0.9, "ece": 0.04, "brier": 0.1,
        "temperature": 1.2, "n_images": 40, "stress_test/clean_accuracy": 0.9, "stress_test/worst_accuracy": 0.5}


def test_model_card_of_a_run_names_it_and_carries_its_config(tracked_run):
    card = model_card(tracked_run)
    assert card.startswith(f"# {tracked_run.name}") and "## Training configuration" in card
    assert "simple_cnn" in card and "not a medical device" in card.lower()
