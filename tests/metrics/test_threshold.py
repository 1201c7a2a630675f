"""The binary operating threshold chosen on validation: Youden's J and a target sensitivity."""

from __future__ import annotations

import numpy as np
import pytest

from pneumoscope.errors import ConfigError, DataError
from pneumoscope.metrics.threshold import choose_threshold, operating_point


def test_youden_picks_the_threshold_that_separates_a_constructed_case():
    # Negatives score up to 0.4 except one at 0.7; positives from 0.5 up. Best J: threshold 0.5 (sens 1, spec 0.75).
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.4, 0.7, 0.5, 0.6, 0.8, 0.9])
    threshold = choose_threshold(y, p, method="youden")
    assert threshold == pytest.approx(0.5)
    point = operating_point(y, p, threshold)
    assert point["sensitivity"] == 1.0 and point["specificity"] == 0.75


def test_youden_maximises_j_over_every_candidate(rng):
    y = rng.integers(0, 2, 300)
    p = np.clip(0.35 * y + 0.65 * rng.random(300), 0, 1)
    threshold = choose_threshold(y, p)
    j = lambda t: operating_point(y, p, t)["sensitivity"] + operating_point(y, p, t)["specificity"] - 1
    assert j(threshold) >= max(j(t) for t in np.unique(p)) - 1e-12


@pytest.mark.parametrize("target", [0.8, 0.9, 0.95, 1.0])
def test_sensitivity_target_is_met_with_the_best_specificity(rng, target):
    y = rng.integers(0, 2, 400)
    p = np.clip(0.3 * y + 0.7 * rng.random(400), 0, 1)
    threshold = choose_threshold(y, p, method="sensitivity", target_sensitivity=target)
    point = operating_point(y, p, threshold)
    assert point["sensitivity"] >= target
    higher = p[p > threshold]
    if higher.size:  # the next higher candidate no longer meets the target
        assert operating_point(y, p, higher.min())["sensitivity"] < target


def test_one_class_validation_and_bad_settings_raise_clear_errors():
    with pytest.raises(DataError, match="only one class"):
        choose_threshold([1, 1, 1], [0.2, 0.5, 0.9])
    with pytest.raises(ConfigError, match="threshold method"):
        choose_threshold([0, 1], [0.2, 0.9], method="median")
    with pytest.raises(ConfigError, match="target sensitivity"):
        choose_threshold([0, 1], [0.2, 0.9], method="sensitivity", target_sensitivity=1.5)
    with pytest.raises(DataError, match="NaN"):
        choose_threshold([0, 1], [np.nan, 0.9])


def test_a_model_no_better_than_chance_keeps_half_instead_of_calling_nothing_positive():
    y = np.array([0, 0, 1, 1])
    inverted = np.array([0.9, 0.8, 0.2, 0.1])  # every pneumonia scored below every normal: J <= 0 at every threshold
    assert choose_threshold(y, inverted) == 0.5
    assert choose_threshold(y, np.array([0.3, 0.7, 0.2, 0.8])) == pytest.approx(0.8)  # J = 0.5 at 0.8: kept
