"""The figures of an evaluation that need the model itself, drawn once and saved beside its results so that the
report (``report.build``) only reads files: Grad-CAM overlays of the most confident errors, the first-layer
filters and the feature maps of one evaluated image. ``figures.json`` says what was drawn, or why not.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from pneumoscope.errors import PneumoscopeError
from pneumoscope.files import atomic_write_bytes, atomic_write_text
from pneumoscope.inference.runs import LoadedRun
from pneumoscope.results import (
    FEATURE_MAPS_PNG,
    FIGURES_JSON,
    FILTERS_PNG,
    GRADCAM_ERRORS_PNG,
    read_figure_notes,
    read_predictions,
)

GRADCAM_IMAGES = 6


def write_model_figures(run: LoadedRun, eval_dir: str | Path, *, gradcam: bool = True, filters: bool = False,
                        images: np.ndarray | None = None) -> dict[str, Any]:
    """Draw the asked figures into ``eval_dir`` (its predictions.csv says which images were wrong); ``images``:
    the evaluated rows' model inputs, if at hand. Returns and saves the notes of ``figures.json``."""
    eval_dir = Path(eval_dir)
    notes = read_figure_notes(eval_dir)
    frame, y, probs = read_predictions(eval_dir, run.classes)
    run.model.to("cpu")  # Grad-CAM and the feature maps run on the CPU
    if gradcam:
        notes["gradcam"] = _gradcam_of_errors(run, eval_dir, frame, y, probs)
    if filters:
        notes["filters"] = _filters(run, eval_dir, frame, images)
    atomic_write_text(eval_dir / FIGURES_JSON, json.dumps(notes, indent=2) + "\n")
    return notes


def _gradcam_of_errors(run: LoadedRun, eval_dir: Path, frame: Any, y: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    from pneumoscope.inference.predictor import Predictor
    from pneumoscope.metrics.classification import most_confident_errors
    from pneumoscope.report.build import ERROR_THUMBNAILS, read_error_images
    from pneumoscope.report.plots import plot_thumbnails

    target = eval_dir / GRADCAM_ERRORS_PNG
    target.unlink(missing_ok=True)
    errors = most_confident_errors(y, probs, run.classes, limit=ERROR_THUMBNAILS, threshold=run.threshold)
    grey, captions, _ = read_error_images(errors, frame)
    grey, captions = grey[:GRADCAM_IMAGES], captions[:GRADCAM_IMAGES]
    if not grey:
        return {"note": None}
    try:
        predictor = Predictor.from_model(run.model, run.meta, name=run.run_dir.name)
        overlays = [predictor.explain_array(image)["overlay"] for image in grey]
    except Exception as error:  # noqa: BLE001 - an optional figure: the report says why it is missing
        return {"note": f"Grad-CAM skipped ({type(error).__name__}: {error})."}
    atomic_write_bytes(target, plot_thumbnails(overlays, captions, title="Grad-CAM of the predicted class",
                                               colour=True))
    return {"file": GRADCAM_ERRORS_PNG,
            "note": f"Second grid: Grad-CAM heatmaps of the predicted class for the first {len(grey)} errors "
                    "(red: regions that raised that class's score)."}


def _filters(run: LoadedRun, eval_dir: Path, frame: Any, images: np.ndarray | None) -> dict[str, Any]:
    from pneumoscope.report.plots import plot_feature_maps, plot_filters

    first = Path(str(frame["path"].iat[0]))
    if images is not None and len(images):
        image = np.asarray(images[0])
    else:
        from pneumoscope.data.imaging import load_image
        from pneumoscope.data.preprocess import preprocess

        image = preprocess(load_image(first), run.image_size, clahe=run.clahe)
    for name in (FILTERS_PNG, FEATURE_MAPS_PNG):
        (eval_dir / name).unlink(missing_ok=True)
    try:
        drawn = {FILTERS_PNG: plot_filters(run.model), FEATURE_MAPS_PNG: plot_feature_maps(run.model, image)}
    except PneumoscopeError as error:
        return {"note": f"Not shown: {error}"}
    for name, png in drawn.items():
        atomic_write_bytes(eval_dir / name, png)
    return {"files": list(drawn), "note": f"Feature maps of {first.name}, as the model sees it."}
