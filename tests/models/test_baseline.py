"""The logistic-regression baseline: fitted with scikit-learn, predicting through the torch Classifier."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pneumoscope.errors import DataError, ModelError
from pneumoscope.models import create_model, fit_logistic_regression, load_classifier, save_classifier
from pneumoscope.models.baseline import pixel_features


@pytest.fixture(scope="module")
def xrays(make_xray) -> tuple[np.ndarray, np.ndarray]:
    """40 synthetic 48 px X-rays: even seeds normal, odd seeds with an opacity."""
    labels = np.arange(40) % 2
    images = np.stack([make_xray(48, seed, bool(label)) for seed, label in enumerate(labels)])
    return images, labels


def sklearn_reference(model, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Class probabilities of the same pipeline fitted in plain scikit-learn."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = pixel_features(model, images)
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(features, labels).predict_proba(
        features)


@pytest.mark.parametrize("sigmoid_binary", [False, True])
def test_binary_fit_matches_scikit_learn(xrays, sigmoid_binary: bool) -> None:
    images, labels = xrays
    model = create_model("logistic_regression", 2, pixels=16, sigmoid_binary=sigmoid_binary)

    result = fit_logistic_regression(model, images, labels)

    with torch.no_grad():
        probs = model.probabilities(model(torch.from_numpy(images).float().div(255).unsqueeze(1))).numpy()
    np.testing.assert_allclose(probs, sklearn_reference(model, images, labels), atol=1e-4)
    assert result["train_accuracy"] == pytest.approx(float((probs.argmax(1) == labels).mean()))
    assert result["train_accuracy"] >= 0.9


def test_three_class_fit_and_round_trip(xrays, tmp_path: Path) -> None:
    images, binary = xrays
    labels = np.where(binary == 1, 1 + (np.arange(len(binary)) // 2) % 2, 0)  # split the opacities into two classes
    model = create_model("logistic_regression", 3, pixels=8)
    fit_logistic_regression(model, images, labels)
    x = torch.from_numpy(images).float().div(255).unsqueeze(1)
    with torch.no_grad():
        probs = model.probabilities(model(x)).numpy()
    np.testing.assert_allclose(probs, sklearn_reference(model, images, labels), atol=1e-4)

    save_classifier(model, {"task": "3class"}, tmp_path)
    loaded, _ = load_classifier(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_labels_must_cover_every_class(xrays) -> None:
    images, labels = xrays
    model = create_model("logistic_regression", 2)
    with pytest.raises(DataError, match="every one of the 2 classes"):
        fit_logistic_regression(model, images, np.zeros_like(labels))
    with pytest.raises(DataError, match="N labels"):
        fit_logistic_regression(model, images, labels[:-1])


def test_only_the_logistic_regression_model_is_fitted(xrays) -> None:
    images, labels = xrays
    with pytest.raises(ModelError, match="needs the logistic_regression model"):
        fit_logistic_regression(create_model("feedforward", 2), images, labels)
    with pytest.raises(ModelError, match="head='replace'"):
        fit_logistic_regression(create_model("logistic_regression", 2, head="gap_fc"), images, labels)
