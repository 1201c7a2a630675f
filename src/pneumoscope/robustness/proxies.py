"""Generalisation proxies: what a Kermany model does outside its validation split, with the data at hand.

- ``unseen_site_normals``: the adult normals of the COVID-19 Radiography Database (other hospitals, scanners and
  population). A model trained on Kermany alone should call them normal: specificity on them and the mean predicted
  p(pneumonia), with percentile-bootstrap confidence intervals.
- ``resolution_consistency``: the full-resolution Kermany originals in ``chest_xray_fullres_sample`` against their
  224-px copies in ``chest_xray/train`` (same file names): does the prediction survive the resolution and encoding
  of the input? Agreement of the predicted class and |Δp(pneumonia)|. These are training images: use them for
  this check only.

Both take a predict function (see ``robustness.stress``) and read images with ``pneumoscope.data.imaging.load_image``.
Each returns ``(summary, per_image)``: a flat dict (JSON-ready) and a DataFrame with one row per image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pneumoscope.errors import ConfigError, DataError
from pneumoscope.paths import DATA_ENV
from pneumoscope.progress import progress_bar
from pneumoscope.robustness.stress import (
    PredictFn,
    batches,
    check_classes,
    check_threshold,
    pneumonia_probability,
    predict_in_batches,
    predicted_classes,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
UNSEEN_NORMALS_DIR = Path("covid19_radiography") / "Normal"
FULLRES_DIR = Path("chest_xray_fullres_sample") / "train"
COPIES_DIR = Path("chest_xray") / "train"
KERMANY_FOLDERS = ("NORMAL", "PNEUMONIA")

Loader = Callable[[Path], np.ndarray]


def _resolve_root(data_root: str | Path | None) -> Path:
    if data_root is None:
        from pneumoscope.paths import data_root as default_root

        return default_root()
    return Path(data_root)


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _require_folder(folder: Path, what: str) -> list[Path]:
    """The image files in ``folder``, or a DataError saying what is expected there."""
    if not folder.is_dir():
        raise DataError(f"folder not found; expected {what} here.", path=folder,
                        fix=f"put the data under {folder.parent} or set {DATA_ENV} to the folder holding it.")
    files = _image_files(folder)
    if not files:
        raise DataError(f"no PNG/JPEG images in this folder; expected {what}.", path=folder,
                        fix=f"put the images there or set {DATA_ENV} to the right data folder.")
    return files


def _default_loader() -> Loader:
    from pneumoscope.data.imaging import load_image

    return load_image


def _predict_files(predict_fn: PredictFn, files: Sequence[Path], num_classes: int, batch_size: int,
                   description: str, progress: bool, load: Loader) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Probabilities ``(N, C)`` for ``files`` loaded in batches, and each image's (width, height)."""
    parts, sizes = [], []
    with progress_bar(progress) as bar:
        task = bar.add_task(description, total=len(files))
        for idx in batches(len(files), batch_size):
            images = [load(files[i]) for i in idx]
            sizes.extend((int(image.shape[1]), int(image.shape[0])) for image in images)
            parts.append(predict_in_batches(predict_fn, images, num_classes))
            bar.advance(task, len(idx))
    return np.concatenate(parts), sizes


def bootstrap_ci(values: np.ndarray, n_bootstrap: int = 1000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean of ``values``."""
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(n_bootstrap, values.size))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def unseen_site_normals(
    predict_fn: PredictFn,
    data_root: str | Path | None,
    classes: Sequence[str],
    threshold: float | None = None,
    limit: int | None = None,
    batch_size: int = 64,
    n_bootstrap: int = 1000,
    seed: int = 0,
    progress: bool = True,
    load: Loader | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Specificity and mean p(pneumonia) on the adult normals in ``DATA_ROOT/covid19_radiography/Normal``.

    ``limit`` takes the first N files in name order. Summary keys: ``n``, ``specificity`` (share called normal),
    ``specificity_ci_low/high``, ``mean_p_pneumonia`` (+ ``_ci_low/high``), ``threshold``, ``folder``.
    Per-image columns: ``file``, ``p_pneumonia``, ``predicted``, ``called_normal``.
    """
    classes = check_classes(classes)
    threshold = check_threshold(threshold)
    folder = _resolve_root(data_root) / UNSEEN_NORMALS_DIR
    files = _require_folder(folder, "the COVID-19 Radiography Database's Normal images (Normal-N.png)")
    if limit is not None:
        if int(limit) < 1:
            raise ConfigError(f"limit {limit!r} must be at least 1.", fix="pass a positive number of images.")
        files = files[: int(limit)]
    probs, _ = _predict_files(predict_fn, files, len(classes), batch_size, "unseen-site normals", progress,
                              load or _default_loader())
    p_pneumonia = pneumonia_probability(probs)
    predicted = predicted_classes(probs, threshold)
    called_normal = predicted == 0
    per_image = pd.DataFrame({
        "file": [f.name for f in files],
        "p_pneumonia": p_pneumonia,
        "predicted": [classes[i] for i in predicted],
        "called_normal": called_normal,
    })
    spec_low, spec_high = bootstrap_ci(called_normal, n_bootstrap, seed=seed)
    p_low, p_high = bootstrap_ci(p_pneumonia, n_bootstrap, seed=seed)
    summary = {
        "proxy": "unseen_site_normals",
        "folder": str(folder),
        "n": len(files),
        "threshold": threshold,
        "specificity": float(called_normal.mean()),
        "specificity_ci_low": spec_low,
        "specificity_ci_high": spec_high,
        "mean_p_pneumonia": float(p_pneumonia.mean()),
        "mean_p_pneumonia_ci_low": p_low,
        "mean_p_pneumonia_ci_high": p_high,
        "n_bootstrap": n_bootstrap,
        "ci_level": 0.95,
    }
    return summary, per_image


def _kermany_label(folder: str, name: str, classes: Sequence[str]) -> str | None:
    """Class of a Kermany train image in ``classes`` from its folder and file name, or None if not in them."""
    if folder == "NORMAL":
        fine = "normal"
    elif "_bacteria" in name:
        fine = "bacteria"
    elif "_virus" in name:
        fine = "virus"
    else:
        fine = "pneumonia"
    if fine in classes:
        return fine
    return "pneumonia" if fine != "normal" and "pneumonia" in classes else None


def resolution_pairs(data_root: str | Path | None) -> list[tuple[str, Path, Path]]:
    """(folder, original, 224-px copy) for every image of ``chest_xray_fullres_sample/train/{NORMAL,PNEUMONIA}``.

    DataError when either tree is absent or when any original has no copy of the same name.
    """
    root = _resolve_root(data_root)
    pairs, missing = [], []
    for folder in KERMANY_FOLDERS:
        originals = _require_folder(root / FULLRES_DIR / folder,
                                    "full-resolution Kermany train originals (chest_xray_fullres_sample)")
        copies = root / COPIES_DIR / folder
        if not copies.is_dir():
            raise DataError("folder not found; expected the 224-px Kermany train images here.", path=copies,
                            fix=f"put the Kermany archive under {root / 'chest_xray'} or set {DATA_ENV}.")
        for original in originals:
            copy = copies / original.name
            if copy.is_file():
                pairs.append((folder, original, copy))
            else:
                missing.append(f"{folder}/{original.name}")
    if missing:
        raise DataError(f"{len(missing)} full-resolution originals have no 224-px copy of the same name in "
                        f"{root / COPIES_DIR} (first: {', '.join(missing[:3])}).", path=root / FULLRES_DIR,
                        fix="use the published Kermany train folder, whose file names the sample keeps.")
    return pairs


def _accuracy(labels: list[str | None], predicted: list[str]) -> float | None:
    known = [(label, p) for label, p in zip(labels, predicted) if label is not None]
    return float(np.mean([label == p for label, p in known])) if known else None


def resolution_consistency(
    predict_fn: PredictFn,
    data_root: str | Path | None,
    classes: Sequence[str],
    threshold: float | None = None,
    batch_size: int = 8,
    progress: bool = True,
    load: Loader | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Prediction on each full-resolution original vs its 224-px copy.

    Δp = p(pneumonia | copy) - p(pneumonia | original). Summary keys: ``n``, ``agreement`` (share with the same
    predicted class), ``n_disagree``, ``mean_abs_delta_p``, ``max_abs_delta_p`` (+ ``max_abs_delta_file``),
    ``mean_delta_p``, ``accuracy_original``, ``accuracy_copy`` (labels from folder and file name), ``threshold``.
    Per-image columns: file, folder, label, sizes, p_pneumonia and predicted class for both, delta_p,
    abs_delta_p, max_class_abs_delta (largest |Δp| over all classes), agree.
    """
    classes = check_classes(classes)
    threshold = check_threshold(threshold)
    load = load or _default_loader()
    pairs = resolution_pairs(data_root)
    originals = [original for _, original, _ in pairs]
    copies = [copy for _, _, copy in pairs]
    probs_original, sizes_original = _predict_files(predict_fn, originals, len(classes), batch_size,
                                                    "full-resolution originals", progress, load)
    probs_copy, sizes_copy = _predict_files(predict_fn, copies, len(classes), max(batch_size, 32),
                                            "224-px copies", progress, load)
    p_original = pneumonia_probability(probs_original)
    p_copy = pneumonia_probability(probs_copy)
    predicted_original = [classes[i] for i in predicted_classes(probs_original, threshold)]
    predicted_copy = [classes[i] for i in predicted_classes(probs_copy, threshold)]
    labels = [_kermany_label(folder, original.name, classes) for folder, original, _ in pairs]
    per_image = pd.DataFrame({
        "file": [original.name for original in originals],
        "folder": [folder for folder, _, _ in pairs],
        "label": labels,
        "width_original": [w for w, _ in sizes_original],
        "height_original": [h for _, h in sizes_original],
        "width_copy": [w for w, _ in sizes_copy],
        "height_copy": [h for _, h in sizes_copy],
        "p_pneumonia_original": p_original,
        "p_pneumonia_copy": p_copy,
        "delta_p": p_copy - p_original,
        "abs_delta_p": np.abs(p_copy - p_original),
        "max_class_abs_delta": np.abs(probs_copy - probs_original).max(axis=1),
        "predicted_original": predicted_original,
        "predicted_copy": predicted_copy,
    })
    per_image["agree"] = per_image["predicted_original"] == per_image["predicted_copy"]
    worst = int(per_image["abs_delta_p"].to_numpy().argmax())
    summary = {
        "proxy": "resolution_consistency",
        "folder": str(_resolve_root(data_root) / FULLRES_DIR),
        "n": len(pairs),
        "threshold": threshold,
        "agreement": float(per_image["agree"].mean()),
        "n_disagree": int((~per_image["agree"]).sum()),
        "mean_abs_delta_p": float(per_image["abs_delta_p"].mean()),
        "max_abs_delta_p": float(per_image["abs_delta_p"].iloc[worst]),
        "max_abs_delta_file": str(per_image["file"].iloc[worst]),
        "mean_delta_p": float(per_image["delta_p"].mean()),
        "accuracy_original": _accuracy(labels, predicted_original),
        "accuracy_copy": _accuracy(labels, predicted_copy),
    }
    return summary, per_image
