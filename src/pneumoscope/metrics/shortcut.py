"""Shortcut audit for multi-source data: can a simple classifier tell the *source* of an image?

If logistic regression on downsampled pixels (or on given features, e.g. a model's embeddings) predicts the
source well under patient-grouped cross-validation, a disease classifier trained on that data can score by
recognising the hospital, scanner or age group instead of the disease (e.g. COVID-19 images all from adults of
another archive). High predictability is a risk to report, not proof of a shortcut.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pneumoscope.errors import ConfigError, DataError
from pneumoscope.metrics.classification import json_ready

DEFAULT_RISK_THRESHOLD = 0.75
DEFAULT_PIXELS = 32


def pixel_features(images: Sequence[np.ndarray] | np.ndarray, size: int = DEFAULT_PIXELS) -> np.ndarray:
    """Images (any size; uint8 or float in [0, 1]) downsampled to ``size``×``size`` and flattened, in [0, 1]."""
    import cv2

    rows = []
    for i, image in enumerate(images):
        array = np.asarray(image)
        if array.ndim == 3 and array.shape[-1] in (1, 3, 4):
            array = array[..., :3].mean(axis=-1)
        if array.ndim != 2 or min(array.shape) < 1:
            raise DataError(f"image {i} has shape {array.shape}, expected a 2-D grayscale image.",
                            fix="pass grayscale images (H, W).")
        scaled = array.astype(np.float32) / (255.0 if array.dtype == np.uint8 else 1.0)
        rows.append(cv2.resize(scaled, (size, size), interpolation=cv2.INTER_AREA).reshape(-1))
    return np.stack(rows) if rows else np.empty((0, size * size), dtype=np.float32)


def _subsample(sources: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """Indices keeping at most ``limit`` images per source (random, reproducible)."""
    if limit is None:
        return np.arange(sources.size)
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(sources == s))[:limit] for s in np.unique(sources)]
    return np.sort(np.concatenate(keep))


def _folds(sources: np.ndarray, groups: np.ndarray, n_splits: int) -> int:
    """Number of folds possible: every source needs at least one patient in each fold."""
    per_source = min(np.unique(groups[sources == s]).size for s in np.unique(sources))
    return min(n_splits, per_source)


def _source_auc(codes: np.ndarray, probs: np.ndarray) -> tuple[float, list[float]]:
    from sklearn.metrics import roc_auc_score

    per_source = [float(roc_auc_score(codes == k, probs[:, k])) for k in range(probs.shape[1])]
    overall = per_source[1] if probs.shape[1] == 2 else float(np.mean(per_source))
    return overall, per_source


def shortcut_audit(sources: Sequence[str], *, images: Sequence[np.ndarray] | np.ndarray | None = None,
                   features: np.ndarray | None = None, groups: Sequence[Any] | None = None, n_splits: int = 5,
                   risk_threshold: float = DEFAULT_RISK_THRESHOLD, pixels: int = DEFAULT_PIXELS,
                   max_per_source: int | None = 1000, seed: int = 0) -> dict[str, Any]:
    """Patient-grouped cross-validated AUC of logistic regression predicting ``sources`` from images or features.

    Give ``images`` (downsampled to ``pixels``² pixels) or ``features`` (``(N, D)``, e.g. model embeddings).
    ``groups``: patient ids (images of a patient stay in one fold); each image its own group when None.
    The AUC is one-vs-rest macro for more than two sources. ``risk`` is True when it reaches ``risk_threshold``.
    With a single source the audit does not apply (``applicable`` False, with the reason).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if (images is None) == (features is None):
        raise ConfigError("the shortcut audit needs either images or features, not both or neither.",
                          fix="pass images=... or features=....")
    if not 0.5 < float(risk_threshold) <= 1.0:
        raise ConfigError(f"risk threshold {risk_threshold!r} is outside (0.5, 1].", fix="use e.g. 0.75.")
    source = np.asarray(sources).astype(str)
    n = source.size
    names, counts = np.unique(source, return_counts=True)
    result: dict[str, Any] = {"sources": dict(zip(names.tolist(), counts.tolist())), "n": int(n),
                              "risk_threshold": float(risk_threshold), "risk": False, "applicable": False}
    if names.size < 2:
        result["reason"] = "the data has a single source"
        return json_ready(result)

    x = pixel_features(images, pixels) if images is not None else np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != n:
        raise DataError(f"got {x.shape[0] if x.ndim else 0} images or feature rows for {n} source labels.",
                        fix="pass one source per image.")
    if not np.all(np.isfinite(x)):
        raise DataError("features contain NaN or infinite values.", fix="check the features.")
    group = np.arange(n).astype(str) if groups is None else np.asarray(groups).astype(str)
    if group.size != n:
        raise DataError(f"got {group.size} patient ids for {n} images.", fix="pass one patient id per image.")

    keep = _subsample(source, max_per_source, seed)
    x, source, group = x[keep], source[keep], group[keep]
    codes = np.searchsorted(names, source)
    folds = _folds(source, group, n_splits)
    if folds < 2:
        result["reason"] = "a source has fewer than two patients, so no grouped cross-validation is possible"
        return json_ready(result)

    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    probs = cross_val_predict(classifier, x, codes, groups=group, cv=splitter, method="predict_proba")
    auc, per_source = _source_auc(codes, probs)
    risk = auc >= risk_threshold
    result.update(
        applicable=True,
        input=f"pixels {pixels}x{pixels}" if images is not None else f"features ({x.shape[1]} per image)",
        classifier="standardised logistic regression (C=0.1)",
        n_used=int(keep.size), n_groups=int(np.unique(group).size), n_splits=int(folds),
        auc=auc, balanced_accuracy=float(balanced_accuracy_score(codes, probs.argmax(axis=1))),
        per_source_auc=dict(zip(names.tolist(), per_source)),
        risk=bool(risk),
        message=(f"The source is predictable from the {'images' if images is not None else 'features'} "
                 f"(AUC {auc:.2f} ≥ {risk_threshold:.2f}): the model may learn the source instead of the disease; "
                 "compare per-source results and test on another source."
                 if risk else f"The source is not easily predictable (AUC {auc:.2f} < {risk_threshold:.2f})."),
    )
    return json_ready(result)
