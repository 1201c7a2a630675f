"""The binary operating point: a probability threshold for the positive class, chosen on the validation split.

An image is called positive when ``p_positive >= threshold`` (the convention of ``sklearn.metrics.roc_curve``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pneumoscope.errors import ConfigError, DataError
from pneumoscope.metrics.classification import as_binary_scores, as_labels

THRESHOLD_METHODS = ("youden", "sensitivity")


def choose_threshold(y_true: Any, p_positive: Any, method: str = "youden", target_sensitivity: float = 0.95) -> float:
    """Threshold on p(class 1) chosen on validation labels ``y_true`` (0/1) and probabilities ``p_positive``.

    ``youden``: maximises Youden's J = sensitivity + specificity - 1 (the highest threshold among ties); a model no
    better than chance on validation (J <= 0 everywhere) keeps 0.5 rather than "call nothing positive".
    ``sensitivity``: the highest threshold whose sensitivity is at least ``target_sensitivity`` (so the best
    specificity that meets the target).
    """
    from sklearn.metrics import roc_curve

    if method not in THRESHOLD_METHODS:
        raise ConfigError(f"unknown threshold method {method!r}.", fix=f"use one of: {', '.join(THRESHOLD_METHODS)}.")
    if not 0.0 < float(target_sensitivity) <= 1.0:
        raise ConfigError(f"target sensitivity {target_sensitivity!r} is outside (0, 1].",
                          fix="use a value such as 0.95.")
    y = as_labels(y_true, 2)
    p = as_binary_scores(p_positive, len(y))
    if np.unique(y).size < 2:
        raise DataError("the validation labels hold only one class, so no threshold can be chosen.",
                        fix="use a validation split with both normal and pneumonia images, or a fixed threshold.")
    fpr, tpr, thresholds = roc_curve(y, p, drop_intermediate=False)
    if method == "youden":
        best = int(np.argmax(tpr - fpr))
        if tpr[best] - fpr[best] <= 0:
            return 0.5
    else:
        best = int(np.flatnonzero(tpr >= float(target_sensitivity) - 1e-12)[0])
    # roc_curve's first threshold is +inf ("call nothing positive"); a probability threshold of 1 is its equivalent
    # only when no score reaches 1, so keep it just above the largest score.
    return float(min(thresholds[best], np.nextafter(1.0, 2.0)))


def operating_point(y_true: Any, p_positive: Any, threshold: float) -> dict[str, float | None]:
    """Sensitivity, specificity and accuracy of the rule ``p_positive >= threshold`` (None where undefined)."""
    y = as_labels(y_true, 2)
    predicted = as_binary_scores(p_positive, len(y)) >= threshold
    positives, negatives = y == 1, y == 0
    return {
        "threshold": float(threshold),
        "sensitivity": float(predicted[positives].mean()) if positives.any() else None,
        "specificity": float((~predicted[negatives]).mean()) if negatives.any() else None,
        "accuracy": float((predicted == positives).mean()) if y.size else None,
    }
