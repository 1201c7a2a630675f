"""Acquisition-shift stress test: a model's metrics on one image set under every perturbation and severity.

Models enter only through a *predict function*: ``predict_fn(images) -> probs`` takes a list of float32 ``(H, W)``
images in [0, 1] at any resolution and returns class probabilities ``(N, C)`` in the order of ``classes``, doing
the model's own preprocessing. Images are perturbed at their stored resolution, before that preprocessing.

Decisions (shared with the proxies): index 0 of ``classes`` is ``normal`` and p(pneumonia) = 1 - p(normal). With no
``threshold`` the predicted class is the arg-max; with one, an image is called pneumonia when p(pneumonia) >=
threshold (then, for 3 or 4 classes, the most probable non-normal class). For a binary model that is the usual
threshold on the positive class.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pandas as pd

from pneumoscope.errors import ConfigError, DataError, ModelError
from pneumoscope.progress import progress_bar
from pneumoscope.robustness.perturbations import SEVERITIES, get_perturbation, list_perturbations, perturb

PredictFn = Callable[[list[np.ndarray]], np.ndarray]

CLEAN = "none"
STRESS_COLUMNS = (
    "perturbation", "kind", "severity", "parameter", "accuracy", "specificity", "sensitivity",
    "mean_p_pneumonia_normals", "auc", "flip_rate", "n", "n_normal", "n_pneumonia",
)


def check_classes(classes: Sequence[str]) -> tuple[str, ...]:
    """``classes`` as a tuple, checked to start with ``normal`` and to have at least two entries."""
    names = tuple(classes)
    if len(names) < 2 or names[0] != "normal":
        raise ConfigError(f"classes {list(names)} must start with 'normal' and name at least two classes.",
                          fix="pass the model's classes, e.g. ('normal', 'pneumonia').")
    return names


def check_threshold(threshold: float | None) -> float | None:
    if threshold is not None and not 0.0 < float(threshold) < 1.0:
        raise ConfigError(f"threshold {threshold!r} is outside (0, 1).",
                          fix="use the model's probability threshold for pneumonia, e.g. 0.5.")
    return None if threshold is None else float(threshold)


def pneumonia_probability(probs: np.ndarray) -> np.ndarray:
    """p(pneumonia) per image: 1 - p(normal) (the positive class for a binary model)."""
    return 1.0 - probs[:, 0]


def predicted_classes(probs: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Predicted class index per image (arg-max, or the pneumonia threshold; see the module docstring)."""
    if threshold is None:
        return probs.argmax(axis=1)
    disease = 1 + probs[:, 1:].argmax(axis=1)
    return np.where(pneumonia_probability(probs) >= threshold, disease, 0)


def predict_in_batches(predict_fn: PredictFn, images: Sequence[np.ndarray], num_classes: int) -> np.ndarray:
    """``predict_fn(images)`` checked: float64 probabilities of shape ``(len(images), num_classes)``."""
    probs = np.asarray(predict_fn(list(images)), dtype=np.float64)
    if probs.shape != (len(images), num_classes):
        raise ModelError(f"the predict function returned an array of shape {probs.shape} for {len(images)} "
                         f"images and {num_classes} classes.",
                         fix="return class probabilities (N, C) in the order of the classes given.")
    if not np.isfinite(probs).all() or probs.min() < 0.0 or probs.max() > 1.0:
        raise ModelError("the predict function returned values that are not probabilities in [0, 1].",
                         fix="apply softmax to the logits before returning them.")
    return probs


def batches(count: int, size: int) -> Iterator[range]:
    for start in range(0, count, size):
        yield range(start, min(start + size, count))


def label_indices(labels: Sequence[int | str], classes: Sequence[str]) -> np.ndarray:
    """Labels (class indices or class names) as an int array of indices into ``classes``."""
    values = list(labels)
    if all(isinstance(v, str) for v in values):
        unknown = sorted({v for v in values} - set(classes))
        if unknown:
            raise DataError(f"labels {unknown} are not among the classes {list(classes)}.",
                            fix="pass labels as class names of the model's task or as class indices.")
        return np.array([list(classes).index(v) for v in values], dtype=np.int64)
    array = np.asarray(values)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer) or (
            array.size and (array.min() < 0 or array.max() >= len(classes))):
        raise DataError(f"labels must be class indices 0..{len(classes) - 1} or class names.",
                        fix=f"use indices into {list(classes)} or those names.")
    return array.astype(np.int64)


def _auc(is_pneumonia: np.ndarray, p_pneumonia: np.ndarray) -> float:
    if is_pneumonia.all() or not is_pneumonia.any():
        return float("nan")
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(is_pneumonia, p_pneumonia))


def _share(mask: np.ndarray) -> float:
    return float(mask.mean()) if mask.size else float("nan")


def stress_metrics(labels: np.ndarray, probs: np.ndarray, threshold: float | None,
                   reference: np.ndarray | None = None) -> dict[str, float]:
    """Accuracy, normal-class specificity, pneumonia sensitivity, mean p(pneumonia) on normals, AUC, flip rate.

    ``reference``: predicted classes of the clean images, for the share of predictions that changed.
    """
    predicted = predicted_classes(probs, threshold)
    p_pneumonia = pneumonia_probability(probs)
    normal = labels == 0
    return {
        "accuracy": _share(predicted == labels),
        "specificity": _share(predicted[normal] == 0),
        "sensitivity": _share(predicted[~normal] != 0),
        "mean_p_pneumonia_normals": float(p_pneumonia[normal].mean()) if normal.any() else float("nan"),
        "auc": _auc(~normal, p_pneumonia),
        "flip_rate": _share(predicted != reference) if reference is not None else 0.0,
        "n": int(labels.size),
        "n_normal": int(normal.sum()),
        "n_pneumonia": int((~normal).sum()),
    }


def _plan(perturbations: Sequence[str] | None, severities: Sequence[int]) -> list[tuple[str, int]]:
    """(perturbation, severity) pairs to run; a one-level perturbation (invert) runs its single level."""
    bad = [s for s in severities if s not in SEVERITIES]
    if bad or not severities:
        raise ConfigError(f"severities {list(severities)} are not a non-empty subset of {list(SEVERITIES)}.",
                          fix=f"choose severities among {list(SEVERITIES)}.")
    names = list_perturbations() if perturbations is None else list(perturbations)
    plan = []
    for name in names:
        levels = get_perturbation(name).severities
        plan.extend((name, s) for s in (levels if len(levels) == 1 else [s for s in severities if s in levels]))
    return plan


def stress_test(
    images: Sequence[np.ndarray],
    labels: Sequence[int | str],
    predict_fn: PredictFn,
    classes: Sequence[str],
    perturbations: Sequence[str] | None = None,
    severities: Sequence[int] = SEVERITIES,
    seed: int = 0,
    threshold: float | None = None,
    batch_size: int = 64,
    progress: bool = True,
) -> pd.DataFrame:
    """Metrics of ``predict_fn`` on ``images`` clean and under each perturbation × severity, one row each.

    Columns: ``STRESS_COLUMNS``; the first row is the clean baseline (perturbation ``"none"``, severity 0).
    Image ``i`` is perturbed with seed ``(seed, i)``, so results do not depend on ``batch_size``.
    ``perturbations`` defaults to every registered one.
    """
    classes = check_classes(classes)
    threshold = check_threshold(threshold)
    y = label_indices(labels, classes)
    if len(images) != y.size or y.size == 0:
        raise DataError(f"got {len(images)} images and {y.size} labels.",
                        fix="pass one label per image and at least one image.")
    plan = _plan(perturbations, severities)
    steps = (1 + len(plan)) * len(images)
    rows = []
    with progress_bar(progress) as bar:
        task = bar.add_task("stress test", total=steps)

        def run(name: str, severity: int) -> np.ndarray:
            parts = []
            for idx in batches(len(images), batch_size):
                batch = [images[i] if name == CLEAN else perturb(images[i], name, severity, (seed, i)) for i in idx]
                parts.append(predict_in_batches(predict_fn, batch, len(classes)))
                bar.advance(task, len(idx))
            return np.concatenate(parts)

        clean = run(CLEAN, 0)
        reference = predicted_classes(clean, threshold)
        rows.append({"perturbation": CLEAN, "kind": CLEAN, "severity": 0, "parameter": "",
                     **stress_metrics(y, clean, threshold)})
        for name, severity in plan:
            bar.update(task, description=f"stress test: {name} {severity}")
            probs = run(name, severity)
            rows.append({"perturbation": name, "kind": get_perturbation(name).kind, "severity": severity,
                         "parameter": str(get_perturbation(name).parameter(severity)),
                         **stress_metrics(y, probs, threshold, reference)})
    return pd.DataFrame(rows, columns=list(STRESS_COLUMNS))


def summary_by_kind(table: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per perturbation kind (``perturbations.KINDS``): the mean accuracy, specificity, sensitivity and balanced
    accuracy over that kind's perturbed rows of a ``stress_test`` table, and how many rows they are."""
    kinds = table["kind"] if "kind" in table else table["perturbation"].map(
        lambda name: CLEAN if name == CLEAN else get_perturbation(name).kind)
    shifted = table.assign(kind=kinds).loc[lambda t: t["kind"].ne(CLEAN)]
    summary = {}
    for kind, rows in shifted.groupby("kind", sort=False):
        balanced = (rows["specificity"] + rows["sensitivity"]) / 2.0
        summary[str(kind)] = {"accuracy": float(rows["accuracy"].mean()),
                              "specificity": float(rows["specificity"].mean()),
                              "sensitivity": float(rows["sensitivity"].mean()),
                              "balanced_accuracy": float(balanced.mean()), "n_conditions": len(rows)}
    return summary
