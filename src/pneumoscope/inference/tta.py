"""Test-time augmentation: a fixed list of mild views of a preprocessed image, and the mean / spread of their
probabilities.

The views are deterministic (same input, same answer) and mild: small shifts and scalings, small brightness and
contrast changes. No horizontal flip: a chest X-ray is not left-right symmetric (heart, lettering), so a flip is not
a "mild" change for a model trained without flips.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class View:
    """One test-time view: a shift (fraction of the side), a scale about the centre, then gain and offset."""

    name: str
    shift_x: float = 0.0
    shift_y: float = 0.0
    scale: float = 1.0
    gain: float = 1.0
    offset: float = 0.0


VIEWS: tuple[View, ...] = (
    View("identity"),
    View("shift_right", shift_x=0.03),
    View("shift_left", shift_x=-0.03),
    View("shift_down", shift_y=0.03),
    View("shift_up", shift_y=-0.03),
    View("zoom_in", scale=1.05),
    View("zoom_out", scale=0.95),
    View("brighter", offset=0.04),
    View("darker", offset=-0.04),
    View("more_contrast", gain=1.1, offset=-0.05),
)
MAX_VIEWS = len(VIEWS)


def check_views(n: int) -> int:
    """Validate a ``--tta`` count (0 = off, 1..MAX_VIEWS views, the identity first)."""
    from pneumoscope.errors import ConfigError

    if not 0 <= n <= MAX_VIEWS:
        raise ConfigError(f"--tta must be between 0 and {MAX_VIEWS}, got {n}.", fix=f"use 0 (off) to {MAX_VIEWS}.")
    return n


def apply_view(image: np.ndarray, view: View) -> np.ndarray:
    """``view`` of a float32 (S, S) image in [0, 1]; the result has the same shape and range."""
    out = image
    if view.shift_x or view.shift_y or view.scale != 1.0:
        h, w = image.shape
        matrix = cv2.getRotationMatrix2D((w / 2 - 0.5, h / 2 - 0.5), 0.0, view.scale)
        matrix[0, 2] += view.shift_x * w
        matrix[1, 2] += view.shift_y * h
        out = cv2.warpAffine(out, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    if view.gain != 1.0 or view.offset:
        out = np.clip(out * view.gain + view.offset, 0.0, 1.0)
    return out.astype(np.float32, copy=False)


def tta_batch(images: np.ndarray, n_views: int) -> np.ndarray:
    """(B, S, S) float32 → (B * n_views, S, S): the first ``n_views`` views of each image, image-major."""
    views = VIEWS[:n_views]
    return np.stack([apply_view(image, view) for image in images for view in views])


def reduce_views(probabilities: np.ndarray, n_views: int) -> tuple[np.ndarray, np.ndarray]:
    """(B * n_views, C) probabilities → per-image mean and standard deviation, each (B, C)."""
    grouped = probabilities.reshape(-1, n_views, probabilities.shape[-1])
    return grouped.mean(axis=1), grouped.std(axis=1)
