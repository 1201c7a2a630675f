"""Calibration: temperature scaling (fitted on validation logits), reliability curve, ECE and Brier score."""

from __future__ import annotations

from typing import Any

import numpy as np

from pneumoscope.errors import DataError
from pneumoscope.metrics.classification import as_labels, as_probabilities

MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0


def _as_logits(logits: Any) -> np.ndarray:
    """Logits as float64 ``(N, K)``; a 1-D array or one column is a single binary logit (sigmoid)."""
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim == 1:
        z = z[:, None]
    if z.ndim != 2 or z.shape[0] == 0:
        raise DataError(f"logits have shape {z.shape}, expected (N, classes) with N > 0.",
                        fix="pass the model's raw outputs on the validation images.")
    if not np.all(np.isfinite(z)):
        raise DataError("logits contain NaN or infinite values.", fix="check the model's outputs.")
    return z


def _nll(torch, z, y, log_t):
    scaled = z / log_t.exp()
    if z.shape[1] == 1:
        return torch.nn.functional.binary_cross_entropy_with_logits(scaled[:, 0], y.double())
    return torch.nn.functional.cross_entropy(scaled, y)


def fit_temperature(logits: Any, y_true: Any) -> float:
    """Temperature T minimising the negative log-likelihood of ``softmax(logits / T)`` (LBFGS, torch).

    ``logits``: ``(N, K)`` (softmax) or ``(N,)`` / ``(N, 1)`` (one sigmoid logit). T > 1 softens over-confident
    predictions; the arg-max (and so the accuracy) does not change. The result is clipped to [0.05, 20].
    """
    import torch

    z_np = _as_logits(logits)
    y_np = as_labels(y_true, max(z_np.shape[1], 2))
    if y_np.size != z_np.shape[0]:
        raise DataError(f"got {z_np.shape[0]} logits and {y_np.size} labels.", fix="pass one label per image.")
    z, y = torch.from_numpy(z_np), torch.from_numpy(y_np)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)  # optimise log T so that T stays positive
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=200, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-10, tolerance_change=1e-12)

    def closure():
        optimizer.zero_grad()
        loss = _nll(torch, z, y, log_t)
        loss.backward()
        return loss

    optimizer.step(closure)
    temperature = float(log_t.detach().exp())
    if not np.isfinite(temperature):
        return MAX_TEMPERATURE
    return float(np.clip(temperature, MIN_TEMPERATURE, MAX_TEMPERATURE))


def apply_temperature(logits: Any, temperature: float) -> np.ndarray:
    """Class probabilities ``(N, K)`` of ``logits / temperature`` (a single logit gives two columns)."""
    from scipy.special import expit, softmax

    z = _as_logits(logits) / float(temperature)
    if z.shape[1] == 1:
        p = expit(z[:, 0])
        return np.stack([1.0 - p, p], axis=1)
    return softmax(z, axis=1)


def _checked(y_true: Any, probs: Any) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs, dtype=np.float64)
    n_classes = 2 if p.ndim == 1 else p.shape[-1]
    y = as_labels(y_true, n_classes)
    return y, as_probabilities(p, y.size, n_classes)


def reliability_curve(y_true: Any, probs: Any, n_bins: int = 15) -> dict[str, Any]:
    """Top-label reliability: per equal-width confidence bin, the mean confidence, the accuracy and the count.

    Confidence is the largest class probability; bin ``b`` holds ``[b/n, (b+1)/n)`` (the last also holds 1.0).
    Empty bins have ``None`` confidence and accuracy.
    """
    if int(n_bins) < 1:
        raise DataError(f"n_bins {n_bins!r} must be at least 1.", fix="use e.g. 15 bins.")
    y, p = _checked(y_true, probs)
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    bins = np.minimum((confidence * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(bins, weights=confidence, minlength=n_bins) / count
        accuracy = np.bincount(bins, weights=correct, minlength=n_bins) / count
    return {
        "bin_edges": np.linspace(0.0, 1.0, n_bins + 1).tolist(),
        "confidence": [None if c == 0 else float(v) for c, v in zip(count, mean_conf)],
        "accuracy": [None if c == 0 else float(v) for c, v in zip(count, accuracy)],
        "count": count.tolist(),
    }


def expected_calibration_error(y_true: Any, probs: Any, n_bins: int = 15) -> float:
    """Top-label ECE: the count-weighted mean |accuracy - confidence| over the bins of ``reliability_curve``."""
    curve = reliability_curve(y_true, probs, n_bins)
    total = sum(curve["count"])
    if total == 0:
        raise DataError("no images to compute the calibration error on.", fix="check the data.")
    return float(sum(n * abs(a - c) for n, a, c in zip(curve["count"], curve["accuracy"], curve["confidence"])
                     if n) / total)


def brier_score(y_true: Any, probs: Any) -> float:
    """Brier score (scikit-learn): mean squared error of p(class 1) for two classes; for K > 2 the multi-class
    score, the mean over images of ``sum_k (p_k - [y = k])^2`` (range [0, 2])."""
    from sklearn.metrics import brier_score_loss

    y, p = _checked(y_true, probs)
    if y.size == 0:
        raise DataError("no images to compute the Brier score on.", fix="check the data.")
    return float(brier_score_loss(y, p, labels=list(range(p.shape[1]))))


def calibration_summary(y_true: Any, probs: Any, n_bins: int = 15) -> dict[str, Any]:
    """ECE, Brier score and the reliability curve together (JSON-serialisable), for metrics.json and the report."""
    return {"ece": expected_calibration_error(y_true, probs, n_bins), "brier": brier_score(y_true, probs),
            "n_bins": int(n_bins), "reliability": reliability_curve(y_true, probs, n_bins)}
