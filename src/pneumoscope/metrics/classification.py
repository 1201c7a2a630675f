"""Classification metrics (scikit-learn) for labels and class probabilities, as a JSON-serialisable dict.

Inputs: ``y_true`` as class indices (or class names) and ``probs`` as an ``(N, K)`` array of class probabilities in
the order of ``classes`` (for two classes a 1-D array of p(class 1) is accepted). Values that are undefined on the
data (the precision of a class never predicted, the recall or AUC of a class absent from the labels) are ``None``,
never a silent 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from pneumoscope.errors import DataError

PROBABILITY_TOLERANCE = 1e-3


def as_labels(y_true: Any, classes: Sequence[str] | int) -> np.ndarray:
    """``y_true`` as a 1-D int array of class indices, checked against ``classes`` (names or their number)."""
    n_classes = classes if isinstance(classes, int) else len(classes)
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise DataError(f"labels must be one-dimensional, got shape {y.shape}.", fix="pass one label per image.")
    if y.dtype.kind in "USO":
        if isinstance(classes, int):
            raise DataError("labels are names but no class names were given.", fix="pass the model's classes.")
        index = {name: i for i, name in enumerate(classes)}
        unknown = sorted({str(v) for v in y if v not in index})
        if unknown:
            raise DataError(f"labels {unknown} are not among the model's classes {list(classes)}.",
                            fix="evaluate on data of the model's task, or relabel the data.")
        return np.array([index[v] for v in y], dtype=np.int64)
    if y.size and (y.dtype.kind not in "biu" and not np.all(np.isfinite(y) & (y == np.round(y)))):
        raise DataError("labels must be whole class indices.", fix="pass integer class indices or class names.")
    y = y.astype(np.int64)
    bad = sorted(set(y[(y < 0) | (y >= n_classes)].tolist()))
    if bad:
        raise DataError(f"label indices {bad} are outside the {n_classes} classes of the model.",
                        fix="evaluate on data of the model's task (e.g. a binary model on binary labels).")
    return y


def as_probabilities(probs: Any, n: int, n_classes: int) -> np.ndarray:
    """``probs`` as a float64 ``(n, n_classes)`` array, checked: finite, in [0, 1], rows summing to 1."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim == 1 and n_classes == 2:
        p = np.stack([1.0 - p, p], axis=1)
    if p.ndim != 2 or p.shape != (n, n_classes):
        raise DataError(f"probabilities have shape {p.shape}, expected ({n}, {n_classes}).",
                        fix="pass one row of class probabilities per image, in the order of the model's classes.")
    if not np.all(np.isfinite(p)):
        raise DataError("probabilities contain NaN or infinite values.", fix="check the model's outputs.")
    if p.size and (p.min() < -PROBABILITY_TOLERANCE or p.max() > 1 + PROBABILITY_TOLERANCE
                   or np.abs(p.sum(axis=1) - 1.0).max() > PROBABILITY_TOLERANCE):
        raise DataError("probabilities must lie in [0, 1] and sum to 1 per image (are these logits?).",
                        fix="apply softmax to the model's logits first.")
    return np.clip(p, 0.0, 1.0)


def as_binary_scores(p_positive: Any, n: int) -> np.ndarray:
    """p(class 1) as a float64 1-D array of length ``n``; an ``(n, 2)`` array gives its second column."""
    p = np.asarray(p_positive, dtype=np.float64)
    if p.ndim == 2 and p.shape[1] == 2:
        p = p[:, 1]
    if p.shape != (n,):
        raise DataError(f"positive-class probabilities have shape {p.shape}, expected ({n},).",
                        fix="pass p(pneumonia) per image.")
    if not np.all(np.isfinite(p)):
        raise DataError("probabilities contain NaN or infinite values.", fix="check the model's outputs.")
    return p


def json_ready(value: Any) -> Any:
    """``value`` made JSON-serialisable: numpy scalars/arrays to Python, NaN/inf to None, recursively."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    return value


def predict_classes(probs: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Predicted class per row: arg-max, or for two classes ``p(class 1) >= threshold`` when a threshold is given."""
    if threshold is not None and probs.shape[1] == 2:
        return (probs[:, 1] >= threshold).astype(np.int64)
    return probs.argmax(axis=1).astype(np.int64)


def _specificities(matrix: np.ndarray) -> list[float | None]:
    """Per class: true negatives / all negatives (one-vs-rest) from a confusion matrix; None without negatives."""
    total = matrix.sum()
    out: list[float | None] = []
    for k in range(matrix.shape[0]):
        negatives = total - matrix[k].sum()
        true_negatives = negatives - (matrix[:, k].sum() - matrix[k, k])
        out.append(float(true_negatives / negatives) if negatives else None)
    return out


def _per_class_auc(y: np.ndarray, probs: np.ndarray) -> tuple[list[float | None], list[float | None]]:
    """One-vs-rest ROC-AUC and average precision (PR-AUC) per class; None where a class or its rest is absent."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    roc, pr = [], []
    for k in range(probs.shape[1]):
        positive = y == k
        if positive.all() or not positive.any():
            roc.append(None)
            pr.append(None)
            continue
        roc.append(float(roc_auc_score(positive, probs[:, k])))
        pr.append(float(average_precision_score(positive, probs[:, k])))
    return roc, pr


def _mean_defined(values: list[float | None], weights: np.ndarray | None = None) -> float | None:
    """Mean of the defined values (weighted by ``weights`` when given); None if none is defined."""
    keep = [i for i, v in enumerate(values) if v is not None]
    if not keep:
        return None
    vals = np.array([values[i] for i in keep], dtype=np.float64)
    if weights is None:
        return float(vals.mean())
    w = weights[keep].astype(np.float64)
    return float((vals * w).sum() / w.sum()) if w.sum() else None


def _precision_recall_f1(y: np.ndarray, predicted: np.ndarray, k: int) -> dict[str, list[float | None]]:
    """Per-class precision, recall and F1 from scikit-learn, with None where sklearn would have to guess (0/0)."""
    from sklearn.metrics import precision_recall_fscore_support

    labels = list(range(k))
    precision, recall, f1, support = precision_recall_fscore_support(
        y, predicted, labels=labels, zero_division=np.nan)
    predicted_counts = np.bincount(predicted, minlength=k)
    out: dict[str, list[float | None]] = {"precision": [], "recall": [], "f1": []}
    for c in labels:
        out["precision"].append(None if predicted_counts[c] == 0 else float(precision[c]))
        out["recall"].append(None if support[c] == 0 else float(recall[c]))
        # F1 is undefined only when the class is neither present nor predicted; otherwise 0 when nothing matches.
        out["f1"].append(None if support[c] == 0 and predicted_counts[c] == 0 else float(np.nan_to_num(f1[c])))
    return out


def classification_metrics(y_true: Any, probs: Any, classes: Sequence[str],
                           threshold: float | None = None) -> dict[str, Any]:
    """Accuracy, balanced accuracy, per-class and averaged precision / recall / specificity / F1 / AUCs, confusion.

    Two classes: the prediction is ``p(class 1) >= threshold`` when ``threshold`` is given, else the arg-max.
    ``balanced_accuracy`` is the mean recall over the classes present in the labels. ``roc_auc`` / ``pr_auc``
    are the macro means of the one-vs-rest per-class values over the classes where they are defined (for two
    classes, ``roc_auc`` is the usual binary AUC of p(class 1)). Confusion-matrix rows are true classes.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix

    classes = [str(c) for c in classes]
    k = len(classes)
    y = as_labels(y_true, classes)
    p = as_probabilities(probs, len(y), k)
    if y.size == 0:
        raise DataError("no images to evaluate.", fix="check the data path and the split.")
    predicted = predict_classes(p, threshold)
    matrix = confusion_matrix(y, predicted, labels=list(range(k)))
    support = matrix.sum(axis=1)
    prf = _precision_recall_f1(y, predicted, k)
    specificity = _specificities(matrix)
    roc, pr = _per_class_auc(y, p)
    with np.errstate(invalid="ignore", divide="ignore"):
        normalised = matrix / support[:, None]

    per_class = {
        name: {
            "precision": prf["precision"][i], "recall": prf["recall"][i], "sensitivity": prf["recall"][i],
            "specificity": specificity[i], "f1": prf["f1"][i], "support": int(support[i]),
            "predicted": int(matrix[:, i].sum()), "roc_auc": roc[i], "pr_auc": pr[i],
        }
        for i, name in enumerate(classes)
    }
    averages = {
        avg: {metric: _mean_defined(prf[metric] if metric != "specificity" else specificity,
                                    support if avg == "weighted" else None)
              for metric in ("precision", "recall", "f1", "specificity")}
        for avg in ("macro", "weighted")
    }
    result = {
        "classes": classes,
        "n": int(y.size),
        "threshold": None if threshold is None or k != 2 else float(threshold),
        "accuracy": float(accuracy_score(y, predicted)),
        "balanced_accuracy": _mean_defined(prf["recall"]),
        "macro": averages["macro"],
        "weighted": averages["weighted"],
        "roc_auc": roc[1] if k == 2 else _mean_defined(roc),
        "pr_auc": pr[1] if k == 2 else _mean_defined(pr),
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
        "confusion_matrix_normalised": normalised.tolist(),
    }
    return json_ready(result)


def most_confident_errors(y_true: Any, probs: Any, classes: Sequence[str], limit: int = 12,
                          threshold: float | None = None) -> list[dict[str, Any]]:
    """The wrong predictions with the highest probability for the predicted class, most confident first:
    ``{"index", "true", "predicted", "confidence"}`` each (for the report's thumbnails)."""
    classes = [str(c) for c in classes]
    y = as_labels(y_true, classes)
    p = as_probabilities(probs, len(y), len(classes))
    predicted = predict_classes(p, threshold)
    wrong = np.flatnonzero(predicted != y)
    confidence = p[wrong, predicted[wrong]]
    order = wrong[np.argsort(-confidence, kind="stable")][: max(int(limit), 0)]
    return [{"index": int(i), "true": classes[y[i]], "predicted": classes[predicted[i]],
             "confidence": float(p[i, predicted[i]])} for i in order]
