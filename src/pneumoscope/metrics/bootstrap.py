"""Percentile bootstrap confidence intervals, resampling patients (whole groups of images) where ids exist.

A resample is stored as a weight per image: how many times it was drawn (with ``groups``, how many times its
patient was drawn, so a patient's images always come and go together). ``headline_with_ci`` computes its metrics
from those weights for all resamples at once (confusion counts by one matrix product, AUC by weighted rank sums),
so 1000 resamples of thousands of images take seconds; its point estimates equal ``classification_metrics``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from pneumoscope.errors import ConfigError, DataError
from pneumoscope.metrics.classification import as_labels, as_probabilities, json_ready, predict_classes

MetricFn = Callable[[np.ndarray, np.ndarray], "float | dict[str, float]"]
PER_CLASS_CI_METRICS = ("precision", "sensitivity", "specificity", "f1")
CHUNK = 100  # resamples per vectorised step: bounds memory at CHUNK × N weights


def _check_settings(n_boot: int, alpha: float) -> None:
    if int(n_boot) < 1:
        raise ConfigError(f"n_boot {n_boot!r} must be at least 1.", fix="use e.g. 1000 resamples.")
    if not 0.0 < float(alpha) < 1.0:
        raise ConfigError(f"alpha {alpha!r} is outside (0, 1).", fix="use 0.05 for 95 % intervals.")


def group_index(groups: Sequence[Any] | None, n: int) -> np.ndarray:
    """Integer group of each image (each image its own group when ``groups`` is None)."""
    if groups is None:
        return np.arange(n)
    values = np.asarray(groups)
    if values.shape != (n,):
        raise DataError(f"got {values.size} patient ids for {n} images.", fix="pass one patient id per image.")
    return np.unique(values.astype(str), return_inverse=True)[1].reshape(-1)


def resample_weights(group: np.ndarray, n_boot: int, seed: int = 0) -> Iterator[np.ndarray]:
    """Chunks of bootstrap weights ``(b, N)``: per resample, how often each image (via its group) was drawn."""
    rng = np.random.default_rng(seed)
    n_groups = int(group.max()) + 1 if group.size else 0
    for start in range(0, n_boot, CHUNK):
        b = min(CHUNK, n_boot - start)
        draws = rng.integers(0, n_groups, size=(b, n_groups)) + n_groups * np.arange(b)[:, None]
        counts = np.bincount(draws.ravel(), minlength=b * n_groups).reshape(b, n_groups)
        yield counts[:, group]


def _interval(samples: np.ndarray, alpha: float) -> tuple[float | None, float | None, int]:
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return None, None, 0
    low, high = np.percentile(finite, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high), int(finite.size)


def _with_ci(value: Any, samples: np.ndarray, alpha: float) -> dict[str, Any]:
    low, high, n_valid = _interval(np.asarray(samples, dtype=np.float64), alpha)
    value = None if value is None or not np.isfinite(value) else float(value)
    return {"value": value, "low": low, "high": high, "n_valid": n_valid}


def bootstrap_ci(y_true: Any, probs: Any, classes: Sequence[str], metric_fn: MetricFn,
                 groups: Sequence[Any] | None = None, n_boot: int = 1000, seed: int = 0,
                 alpha: float = 0.05) -> dict[str, Any]:
    """Percentile ``1 - alpha`` interval of ``metric_fn(y, probs)`` (a float or a dict of floats) over resamples.

    Resamples images, or whole patients when ``groups`` (one id per image) is given. Resamples on which the
    metric is undefined (NaN/None, e.g. a class absent) are left out and counted: ``n_valid``. Returns
    ``{"value", "low", "high", "n_valid"}``, or for a dict-valued metric one such entry per key.
    ``metric_fn`` runs once per resample: keep it cheap (``headline_with_ci`` is the vectorised path).
    """
    _check_settings(n_boot, alpha)
    y = as_labels(y_true, classes)
    p = as_probabilities(probs, y.size, len(classes))
    if y.size == 0:
        raise DataError("no images to bootstrap.", fix="check the data.")
    group = group_index(groups, y.size)
    point = metric_fn(y, p)
    keys = list(point) if isinstance(point, dict) else [None]
    samples: dict[Any, list[float]] = {key: [] for key in keys}
    image = np.arange(y.size)
    for weights in resample_weights(group, int(n_boot), seed):
        for row in weights:
            chosen = np.repeat(image, row)
            value = metric_fn(y[chosen], p[chosen])
            for key in keys:
                v = value if key is None else value.get(key)
                samples[key].append(np.nan if v is None else float(v))
    if keys == [None]:
        return json_ready(_with_ci(point, np.array(samples[None]), alpha))
    return json_ready({key: _with_ci(point[key], np.array(samples[key]), alpha) for key in keys})


def _confusion_counts(weights: np.ndarray, y: np.ndarray, predicted: np.ndarray, k: int) -> np.ndarray:
    """Weighted confusion matrices ``(b, k, k)`` (rows true classes) for each resample's weights."""
    cell = np.zeros((y.size, k * k))
    cell[np.arange(y.size), y * k + predicted] = 1.0
    return (weights @ cell).reshape(-1, k, k)


def _safe_divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)


def _nanmean(values: np.ndarray, axis: int) -> np.ndarray:
    count = np.isfinite(values).sum(axis=axis)
    total = np.nansum(values, axis=axis)
    return _safe_divide(total, count.astype(np.float64))


class _WeightedAUC:
    """One-vs-rest ROC-AUC of one class's scores under image weights (ties count one half), for many resamples."""

    def __init__(self, positive: np.ndarray, scores: np.ndarray):
        self.order = np.argsort(scores, kind="stable")
        sorted_scores = scores[self.order]
        self.positive = positive[self.order].astype(np.float64)
        new_value = np.r_[True, sorted_scores[1:] != sorted_scores[:-1]]
        starts = np.flatnonzero(new_value)
        tie_id = np.cumsum(new_value) - 1
        ends = np.r_[starts[1:], scores.size] - 1
        self.before = starts[tie_id] - 1  # last position below this score's tie group (-1: none)
        self.last = ends[tie_id]  # last position of this score's tie group

    def __call__(self, weights: np.ndarray) -> np.ndarray:
        w = weights[:, self.order].astype(np.float64)
        w_pos, w_neg = w * self.positive, w * (1.0 - self.positive)
        cum_neg = np.concatenate([np.zeros((w.shape[0], 1)), np.cumsum(w_neg, axis=1)], axis=1)
        below = cum_neg[:, self.before + 1]
        tied = cum_neg[:, self.last + 1] - below
        pairs = w_pos.sum(axis=1) * w_neg.sum(axis=1)
        return _safe_divide((w_pos * (below + 0.5 * tied)).sum(axis=1), pairs)


def _headline_from_weights(weights: np.ndarray, y: np.ndarray, predicted: np.ndarray, k: int,
                           aucs: list[_WeightedAUC]) -> dict[str, np.ndarray]:
    """Headline metrics for each resample (rows of ``weights``), with the conventions of classification_metrics."""
    matrix = _confusion_counts(weights, y, predicted, k)
    total = matrix.sum(axis=(1, 2))
    support, predicted_count = matrix.sum(axis=2), matrix.sum(axis=1)
    tp = np.diagonal(matrix, axis1=1, axis2=2)
    recall = _safe_divide(tp, support)
    precision = _safe_divide(tp, predicted_count)
    f1 = _safe_divide(2 * tp, support + predicted_count)
    negatives = total[:, None] - support
    specificity = _safe_divide(negatives - (predicted_count - tp), negatives)
    class_auc = np.stack([auc(weights) for auc in aucs], axis=1)
    return {
        "accuracy": _safe_divide(tp.sum(axis=1), total),
        "balanced_accuracy": _nanmean(recall, axis=1),
        "macro_f1": _nanmean(f1, axis=1),
        "roc_auc": class_auc[:, 1] if k == 2 else _nanmean(class_auc, axis=1),
        "precision": precision,
        "sensitivity": recall,
        "specificity": specificity,
        "f1": f1,
    }


def headline_with_ci(y_true: Any, probs: Any, classes: Sequence[str], groups: Sequence[Any] | None = None,
                     threshold: float | None = None, n_boot: int = 1000, seed: int = 0,
                     alpha: float = 0.05) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro F1, ROC-AUC and per-class precision / sensitivity / specificity / F1 with
    bootstrap CIs.

    Each metric is ``{"value", "low", "high", "n_valid"}``; ``per_class`` maps class → ``{"precision",
    "sensitivity", "specificity", "f1"}`` (precision is undefined, and left out of ``n_valid``, on resamples where
    the class is never predicted). Binary prediction at ``threshold`` when given (as in ``classification_metrics``).
    ``resampled`` says whether patients or images were resampled.
    """
    _check_settings(n_boot, alpha)
    classes = [str(c) for c in classes]
    k = len(classes)
    y = as_labels(y_true, classes)
    p = as_probabilities(probs, y.size, k)
    if y.size == 0:
        raise DataError("no images to bootstrap.", fix="check the data.")
    predicted = predict_classes(p, threshold)
    group = group_index(groups, y.size)
    aucs = [_WeightedAUC(y == c, p[:, c]) for c in range(k)]
    point = _headline_from_weights(np.ones((1, y.size)), y, predicted, k, aucs)
    chunks = [_headline_from_weights(w, y, predicted, k, aucs) for w in resample_weights(group, int(n_boot), seed)]
    samples = {name: np.concatenate([c[name] for c in chunks]) for name in point}
    result: dict[str, Any] = {
        name: _with_ci(point[name][0], samples[name], alpha)
        for name in ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc")
    }
    result["per_class"] = {
        name: {metric: _with_ci(point[metric][0, i], samples[metric][:, i], alpha)
               for metric in PER_CLASS_CI_METRICS}
        for i, name in enumerate(classes)
    }
    result.update(n=int(y.size), n_boot=int(n_boot), alpha=float(alpha), seed=int(seed),
                  threshold=None if threshold is None or k != 2 else float(threshold),
                  resampled="patients" if groups is not None else "images", n_groups=int(group.max()) + 1)
    return json_ready(result)
