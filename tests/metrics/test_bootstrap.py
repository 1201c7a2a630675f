"""Bootstrap confidence intervals: coverage of the point estimate, width, patient resampling, agreement with sklearn."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from pneumoscope.errors import ConfigError, DataError
from pneumoscope.metrics.bootstrap import bootstrap_ci, group_index, headline_with_ci, resample_weights
from pneumoscope.metrics.classification import classification_metrics

BINARY = ["normal", "pneumonia"]
FOUR = ["normal", "bacteria", "virus", "covid"]


def noisy_predictions(rng: np.random.Generator, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    y = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k)) + 2.0 * np.eye(k)[y] * rng.random((n, 1))
    return y, softmax(logits, axis=1)


def accuracy(y: np.ndarray, probs: np.ndarray) -> float:
    return float(accuracy_score(y, probs.argmax(axis=1)))


def test_interval_contains_the_point_estimate_and_narrows_with_more_data(rng):
    widths = []
    for n in (100, 1600):
        y, probs = noisy_predictions(rng, n, 2)
        ci = bootstrap_ci(y, probs, BINARY, accuracy, n_boot=400)
        assert ci["value"] == pytest.approx(accuracy(y, probs))
        assert ci["low"] <= ci["value"] <= ci["high"] and ci["n_valid"] == 400
        widths.append(ci["high"] - ci["low"])
    assert widths[1] < widths[0] / 2  # ~1/sqrt(16) in theory


def test_grouped_bootstrap_resamples_whole_patients(rng):
    patients, per_patient = 12, 20
    patient = np.repeat(np.arange(patients), per_patient)
    y = np.repeat(rng.integers(0, 2, patients), per_patient)
    p1 = np.repeat((np.arange(patients) + 1) / (patients + 2), per_patient)  # one score per patient: a fingerprint
    probs = np.stack([1 - p1, p1], axis=1)
    seen_counts = set()

    def counting_metric(y_resampled, probs_resampled):
        _, counts = np.unique(probs_resampled[:, 1], return_counts=True)
        seen_counts.update((counts % per_patient).tolist())
        return accuracy(y_resampled, probs_resampled)

    grouped = bootstrap_ci(y, probs, BINARY, counting_metric, groups=[f"p{i}" for i in patient], n_boot=200)
    assert seen_counts == {0}  # each patient drawn k times brings exactly k × 20 images
    images = bootstrap_ci(y, probs, BINARY, accuracy, n_boot=200)
    # 12 independent patients carry far less information than 240 independent images
    assert grouped["high"] - grouped["low"] > 2 * (images["high"] - images["low"])


def test_resample_weights_are_constant_within_a_patient():
    group = group_index(["a", "a", "b", "c", "c", "c"], 6)
    for weights in resample_weights(group, 150, seed=1):
        assert weights.shape[1] == 6
        assert np.all(weights[:, 0] == weights[:, 1]) and np.all(weights[:, 3] == weights[:, 5])
        draws_per_patient = weights[:, [0, 2, 3]]
        assert np.all(draws_per_patient.sum(axis=1) == 3)  # 3 patients drawn per resample


@pytest.mark.parametrize("k, threshold", [(2, None), (2, 0.3), (4, None)])
def test_headline_point_values_equal_classification_metrics(rng, k, threshold):
    classes = BINARY if k == 2 else FOUR
    y, probs = noisy_predictions(rng, 300, k)
    h = headline_with_ci(y, probs, classes, threshold=threshold, n_boot=50)
    m = classification_metrics(y, probs, classes, threshold=threshold)
    assert h["accuracy"]["value"] == pytest.approx(m["accuracy"])
    assert h["balanced_accuracy"]["value"] == pytest.approx(m["balanced_accuracy"])
    assert h["macro_f1"]["value"] == pytest.approx(m["macro"]["f1"])
    assert h["roc_auc"]["value"] == pytest.approx(m["roc_auc"])
    for name in classes:
        for metric in ("precision", "sensitivity", "specificity", "f1"):
            expected = m["per_class"][name][metric]
            got = h["per_class"][name][metric]["value"]
            assert got == pytest.approx(expected) if expected is not None else got is None, (name, metric)
    json.dumps(h, allow_nan=False)


def test_vectorised_resamples_agree_with_sklearn_on_every_resample(rng):
    """Same seed, same resamples: the vectorised intervals equal those of sklearn called per resample."""
    y, probs = noisy_predictions(rng, 120, 3)
    probs = np.round(probs, 2)  # ties in the scores
    probs /= probs.sum(axis=1, keepdims=True)
    classes = ["normal", "bacteria", "virus"]
    groups = rng.integers(0, 40, 120)
    h = headline_with_ci(y, probs, classes, groups=groups, n_boot=200, seed=3)

    def sklearn_metrics(yy, pp):
        predicted = pp.argmax(axis=1)
        present = np.unique(yy)
        aucs = [roc_auc_score(yy == c, pp[:, c]) for c in range(3) if 0 < (yy == c).sum() < yy.size]
        f1 = f1_score(yy, predicted, labels=np.union1d(present, predicted), average="macro")
        return {"accuracy": accuracy_score(yy, predicted), "balanced_accuracy": balanced_accuracy_score(yy, predicted),
                "macro_f1": f1, "roc_auc": np.mean(aucs),
                "virus_sensitivity": recall_score(yy, predicted, labels=[2], average=None, zero_division=np.nan)[0],
                "virus_precision": precision_score(yy, predicted, labels=[2], average=None, zero_division=np.nan)[0],
                "virus_f1": f1_score(yy, predicted, labels=[2], average=None, zero_division=np.nan)[0]}

    reference = bootstrap_ci(y, probs, classes, sklearn_metrics, groups=groups, n_boot=200, seed=3)
    for name in ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc"):
        assert h[name]["low"] == pytest.approx(reference[name]["low"], abs=1e-9), name
        assert h[name]["high"] == pytest.approx(reference[name]["high"], abs=1e-9), name
    for metric in ("sensitivity", "precision", "f1"):
        for bound in ("low", "high"):
            assert h["per_class"]["virus"][metric][bound] == pytest.approx(reference[f"virus_{metric}"][bound]), metric
    assert h["resampled"] == "patients" and h["n_groups"] == len(np.unique(groups))


def test_thousand_resamples_of_a_thousand_images_take_seconds(rng):
    y, probs = noisy_predictions(rng, 1000, 4)
    start = time.perf_counter()
    headline_with_ci(y, probs, FOUR, groups=rng.integers(0, 400, 1000), n_boot=1000)
    assert time.perf_counter() - start < 10


def test_undefined_resamples_are_counted_and_bad_settings_raise():
    y = np.array([0] * 30 + [1])  # one positive: many resamples hold no pneumonia image
    probs = np.tile([0.8, 0.2], (31, 1))
    h = headline_with_ci(y, probs, BINARY, n_boot=300)
    assert 0 < h["per_class"]["pneumonia"]["sensitivity"]["n_valid"] < 300
    with pytest.raises(ConfigError):
        bootstrap_ci(y, probs, BINARY, accuracy, n_boot=0)
    with pytest.raises(ConfigError):
        headline_with_ci(y, probs, BINARY, alpha=1.5)
    with pytest.raises(DataError, match="patient ids"):
        headline_with_ci(y, probs, BINARY, groups=["a", "b"])
