"""Temperature scaling, ECE, Brier score and the reliability curve."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.special import softmax
from sklearn.metrics import log_loss

from pneumoscope.errors import DataError
from pneumoscope.metrics.calibration import (
    apply_temperature,
    brier_score,
    calibration_summary,
    expected_calibration_error,
    fit_temperature,
    reliability_curve,
)


def labels_drawn_from(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    cumulative = probs.cumsum(axis=1)
    return (rng.random((len(probs), 1)) > cumulative).sum(axis=1).clip(0, probs.shape[1] - 1)


@pytest.mark.parametrize("true_temperature", [0.6, 2.5])
def test_temperature_fitting_recovers_a_known_temperature(rng, true_temperature):
    logits = rng.normal(0, 3, size=(4000, 3))
    y = labels_drawn_from(softmax(logits / true_temperature, axis=1), rng)
    fitted = fit_temperature(logits, y)
    assert fitted == pytest.approx(true_temperature, rel=0.12)
    # the fitted temperature is the NLL minimum: nudging it either way does worse
    nll = lambda t: log_loss(y, apply_temperature(logits, t), labels=[0, 1, 2])
    assert nll(fitted) <= min(nll(fitted * 0.9), nll(fitted * 1.1)) + 1e-9


def test_single_sigmoid_logit_and_torch_tensor_inputs(rng):
    logits = rng.normal(0, 4, size=3000)
    y = (rng.random(3000) < 1 / (1 + np.exp(-logits / 2.0))).astype(int)
    assert fit_temperature(torch.from_numpy(logits)[:, None], torch.from_numpy(y)) == pytest.approx(2.0, rel=0.15)
    probs = apply_temperature(logits, 2.0)
    assert probs.shape == (3000, 2) and np.allclose(probs.sum(axis=1), 1)


def test_ece_matches_a_hand_computation():
    # 3 bins: [0, 1/3), [1/3, 2/3), [2/3, 1]. Top-label confidences 0.9, 0.8 (bin 2), 0.6, 0.5 (bin 1).
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
    y = np.array([0, 0, 0, 1])  # correct, wrong, correct, wrong (argmax of a tie is class 0)
    # bin 2: conf 0.85, acc 0.5 -> |gap| 0.35; bin 1: conf 0.55, acc 0.5 -> 0.05; weights 2/4 each
    assert expected_calibration_error(y, probs, n_bins=3) == pytest.approx(0.5 * 0.35 + 0.5 * 0.05)
    curve = reliability_curve(y, probs, n_bins=3)
    assert curve["count"] == [0, 2, 2] and curve["confidence"][0] is None
    assert curve["confidence"][2] == pytest.approx(0.85) and curve["accuracy"][1] == pytest.approx(0.5)


def test_ece_agrees_with_torchmetrics_on_random_data(rng):
    from torchmetrics.functional.classification import multiclass_calibration_error

    probs = softmax(rng.normal(0, 2, size=(500, 4)), axis=1)
    y = rng.integers(0, 4, 500)
    expected = multiclass_calibration_error(torch.from_numpy(probs), torch.from_numpy(y), num_classes=4, n_bins=15)
    assert expected_calibration_error(y, probs) == pytest.approx(float(expected), abs=1e-6)  # torchmetrics works in float32


def test_brier_score_matches_hand_computation_binary_and_multiclass():
    binary = np.array([[0.8, 0.2], [0.3, 0.7], [0.5, 0.5]])
    assert brier_score([0, 1, 1], binary) == pytest.approx((0.2**2 + 0.3**2 + 0.5**2) / 3)
    assert brier_score([0, 1, 1], binary[:, 1]) == pytest.approx((0.2**2 + 0.3**2 + 0.5**2) / 3)
    three = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    # image 1 (class 0): .09+.04+.01; image 2 (class 1, absent class 2 is fine): .01+.81+.64
    assert brier_score([0, 1], three) == pytest.approx((0.14 + 1.46) / 2)


def test_summary_is_json_serialisable_and_bad_inputs_raise():
    summary = calibration_summary([0, 1, 2], np.eye(3))
    assert summary["ece"] == 0 and summary["brier"] == 0
    json.dumps(summary, allow_nan=False)
    with pytest.raises(DataError, match="sum to 1"):
        brier_score([0, 1], np.array([[3.0, -1.0], [0.2, 2.0]]))
    with pytest.raises(DataError, match="outside"):
        expected_calibration_error([0, 3], np.eye(2))
    with pytest.raises(DataError, match="NaN"):
        fit_temperature(np.array([[np.nan, 0.0]]), [0])
