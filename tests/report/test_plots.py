"""Report plots: each returns a PNG with content; bad input gives clear errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from report_helpers import CLASSES, stress_rows, synthetic_predictions, tiny_cnn, training_metrics

from pneumoscope.errors import DataError, ModelError
from pneumoscope.metrics.calibration import reliability_curve
from pneumoscope.report import plots


def decoded(png: bytes) -> np.ndarray:
    assert png.startswith(b"\x89PNG")
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32)
    assert pixels.std() > 10, "plot is (nearly) blank"
    return pixels


def test_training_curves_from_a_csv_path_and_written_when_asked(tmp_path):
    csv = tmp_path / "metrics.csv"
    training_metrics().to_csv(csv, index=False)
    out = tmp_path / "run" / "curves.png"
    png = plots.plot_training_curves(csv, out)
    assert out.read_bytes() == png
    assert decoded(png).shape[1] > decoded(png).shape[0]  # two panels side by side
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["curves.png"]  # no temporary files left
    partial = training_metrics().drop(columns=["val_acc", "stage"])
    decoded(plots.plot_training_curves(partial))
    with pytest.raises(DataError, match="no epochs"):
        plots.plot_training_curves(training_metrics().iloc[:0])


def test_confusion_roc_reliability_and_thumbnails(make_xray):
    y, probs, _, _ = synthetic_predictions(120)
    decoded(plots.plot_confusion_matrix(np.diag([5, 4, 0, 3]), CLASSES))  # a class without images: a row of –
    with pytest.raises(DataError, match="shape"):
        plots.plot_confusion_matrix(np.eye(3), CLASSES)
    decoded(plots.plot_roc_pr(y, probs, CLASSES))
    absent = y != 3  # covid absent from the labels: its curves are left out, no crash
    decoded(plots.plot_roc_pr(y[absent], probs[absent], CLASSES))
    p1 = probs[:, 1] / probs[:, :2].sum(axis=1)
    decoded(plots.plot_roc_pr((y == 1).astype(int), p1, ["normal", "pneumonia"]))
    decoded(plots.plot_reliability(reliability_curve(y, probs), ece=0.05))
    grid = decoded(plots.plot_thumbnails([make_xray(32, seed=i) for i in range(7)], [f"#{i}" for i in range(7)],
                                         columns=4))
    assert grid.shape[0] < grid.shape[1]  # 2 rows of 4
    with pytest.raises(DataError, match="captions"):
        plots.plot_thumbnails([make_xray(32)], [])


def test_filters_and_feature_maps_of_a_small_cnn(make_xray):
    model = tiny_cnn().train()
    decoded(plots.plot_filters(model))
    decoded(plots.plot_feature_maps(model, make_xray(40)))
    assert model.training  # the model's mode is restored
    decoded(plots.plot_feature_maps(model, make_xray(40).astype(np.float32) / 255, layer="1"))
    with pytest.raises(ModelError, match="no layer"):
        plots.plot_feature_maps(model, make_xray(40), layer="head")
    import torch

    with pytest.raises(ModelError, match="convolution"):
        plots.plot_filters(torch.nn.Linear(3, 2))


def test_stress_bars_per_perturbation_and_severity():
    pixels = decoded(plots.plot_stress(stress_rows()))
    assert pixels.shape[0] > 400  # two metric panels
    with pytest.raises(DataError, match="columns"):
        plots.plot_stress(stress_rows().drop(columns=["specificity"]))
