"""An ensemble of two tiny runs (``pneumoscope ensemble``): what it predicts is the mean of its members'
probabilities, its threshold is chosen on their validation split, and every consumer of a model folder takes it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tiny_runs import train_tiny
from typer.testing import CliRunner

from pneumoscope.cli.main import app
from pneumoscope.errors import ConfigError, ModelError
from pneumoscope.inference.export import export_onnx
from pneumoscope.inference.loading import load_predictor
from pneumoscope.metrics.threshold import choose_threshold
from pneumoscope.models import load_classifier
from pneumoscope.models.scoring import forward, probabilities
from pneumoscope.results import read_run_record
from pneumoscope.training.config import load_run_config
from pneumoscope.training.datamodule import PneumoDataModule
from pneumoscope.training.ensemble import combine_runs


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_kermany) -> dict[str, Path]:
    """Two seeds on one split, one run on another split and one at another input size."""
    root = tmp_path_factory.mktemp("ensemble_runs")
    cache = tmp_path_factory.getbasetemp() / "pneumoscope-cache"
    return {
        "a": train_tiny(root / "a", tiny_kermany, cache, seed=0, data={"split_seed": 0}),
        "b": train_tiny(root / "b", tiny_kermany, cache, seed=1, data={"split_seed": 0}),
        "other_split": train_tiny(root / "other_split", tiny_kermany, cache, seed=2,
                                  data={"split_seed": 7}),
        "other_size": train_tiny(root / "other_size", tiny_kermany, cache, seed=3,
                                 data={"split_seed": 0, "image_size": 40}),
    }


@pytest.fixture(scope="module")
def combined(runs, tmp_path_factory) -> Path:
    return combine_runs([runs["a"], runs["b"]], tmp_path_factory.mktemp("ensemble") / "ab")


def _images(n: int = 6) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [rng.random((48, 56)).astype(np.float32) for _ in range(n)]


def test_predictions_are_the_mean_of_the_members_probabilities(runs, combined):
    members = [load_predictor(runs[k], backend="pytorch", applicability=None) for k in ("a", "b")]
    ensemble = load_predictor(combined, backend="pytorch", applicability=None)
    images = _images()
    expected = np.mean([[r["probabilities"]["pneumonia"] for r in m.predict_arrays(images)] for m in members], axis=0)
    got = np.array([r["probabilities"]["pneumonia"] for r in ensemble.predict_arrays(images)])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert ensemble.temperature == 1.0  # the members bring their own
    labels = [r["label"] for r in ensemble.predict_arrays(images)]
    assert labels == ["pneumonia" if p >= ensemble.threshold else "normal" for p in got]


def test_threshold_is_chosen_on_the_members_validation_split(runs, combined):
    config = load_run_config(runs["a"])
    images, labels = PneumoDataModule(read_run_record(runs["a"]).manifest, config).val_arrays()
    mean = np.mean([probabilities(forward(model, images)[0], read_run_record(runs[k]).meta.temperature)[:, 1]
                    for k in ("a", "b") for model in [load_classifier(runs[k])[0]]], axis=0)
    meta = json.loads((combined / "model.json").read_text())
    assert meta["threshold"] == pytest.approx(choose_threshold(labels, mean, method="youden"), abs=1e-6)
    assert meta["val_metrics"]["accuracy_at_threshold"] == pytest.approx(np.mean((mean >= meta["threshold"]) == labels))
    assert [m["run"] for m in meta["members"]] == ["a", "b"]
    assert meta["members"][1]["temperature"] == pytest.approx(read_run_record(runs["b"]).meta.temperature)
    assert (combined / "summary.json").is_file() and (combined / "manifest.csv").is_file()


def test_onnx_export_features_and_explanation(combined, runs, tmp_path):
    result = export_onnx(combined, tmp_path / "ensemble.onnx")
    assert result.max_abs_prob_diff < 1e-4 and result.outputs == ("logits", "features")
    onnx = load_predictor(tmp_path / "ensemble.onnx", applicability=None)
    torch_side = load_predictor(combined, backend="pytorch", applicability=None)
    images = _images(3)
    np.testing.assert_allclose([r["probabilities"]["pneumonia"] for r in onnx.predict_arrays(images)],
                               [r["probabilities"]["pneumonia"] for r in torch_side.predict_arrays(images)],
                               atol=1e-4)
    widths = [load_predictor(runs[k], backend="pytorch", applicability=None).features_arrays(images).shape[1]
              for k in ("a", "b")]
    assert torch_side.features_arrays(images).shape == (3, sum(widths))
    prepared = np.stack([torch_side.prepare(image) for image in images])
    logits, pooled = forward(load_classifier(combined)[0], (prepared * 255).round().astype(np.uint8), features=True)
    assert logits.shape == (3, 2) and pooled.shape == (3, sum(widths))  # what evaluation's feature analyses read
    explained = torch_side.explain_array(images[0])
    assert explained["heatmap"].shape == images[0].shape
    heatmap = explained["heatmap"]
    assert np.isfinite(heatmap).all() and 0.0 <= heatmap.min() <= heatmap.max() <= 1.0


def test_cli_writes_the_folder_and_says_where(runs, tmp_path):
    result = CliRunner().invoke(app, ["ensemble", str(runs["a"]), str(runs["b"]), "--out", str(tmp_path / "cli")])
    assert result.exit_code == 0, result.output
    assert "ensemble of 2 runs, threshold" in result.output and str((tmp_path / "cli").resolve()) in result.output
    assert read_run_record(tmp_path / "cli").meta.architecture == "mean_probability_ensemble"


def test_runs_that_cannot_be_combined_are_refused_by_name(runs, combined, tmp_path):
    with pytest.raises(ConfigError, match="at least two"):
        combine_runs([runs["a"]], tmp_path / "one")
    with pytest.raises(ConfigError, match="given twice"):
        combine_runs([runs["a"], runs["a"]], tmp_path / "twice")
    with pytest.raises(ModelError, match="validated on other images") as split:
        combine_runs([runs["a"], runs["other_split"]], tmp_path / "split")
    assert "other_split" in str(split.value) and "split_seed" in str(split.value)
    with pytest.raises(ModelError, match="input size"):
        combine_runs([runs["a"], runs["other_size"]], tmp_path / "size")
    before = (combined / "model.safetensors").read_bytes()
    with pytest.raises(ConfigError, match="already holds a model"):
        combine_runs([runs["a"], runs["b"]], combined)
    assert (combined / "model.safetensors").read_bytes() == before
    assert not (tmp_path / "split").exists()


def test_evaluate_scores_the_ensemble_on_its_members_test_split(combined, runs):
    from pneumoscope.api import evaluate

    result = evaluate(combined, split="test", proxies=False, bootstrap=50)
    predictions = result.predictions
    manifest = read_run_record(combined).manifest
    assert sorted(predictions["path"]) == sorted(manifest.loc[manifest["split"].eq("test"), "path"])
    member = evaluate(runs["a"], split="test", proxies=False, bootstrap=50).predictions
    assert predictions["path"].tolist() == member["path"].tolist()
    assert result.report.is_file()
