"""Cheap statistics of an image that tell a radiograph from photos, blanks, noise, text and patterns.

Colourfulness of the original RGB, dynamic range, grey-level entropy, the mass of the most common grey level,
neighbour-pixel correlation (noise has none), edge density (text, patterns) and the correlation of an 8x8 thumbnail
with the mean frontal chest X-ray. Each statistic has a ``typical`` value and a ``limit`` fitted on real X-rays
(``benchmarks/ood_guard.py --fit``); its score is 0 at the typical value and 1 at the limit. ``image_score`` gives
the largest score (>= 1: not a chest X-ray) and the bounds crossed; it is one check of the scope verdict
(``models.scope``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

STATS_SIZE = 128
THUMB_SIZE = 8

# Mean of the z-scored 8x8 thumbnails of real frontal chest X-rays (Kermany train + COVID-19 Radiography DB, every
# second image), itself z-scored; rows top to bottom. Written by `benchmarks/ood_guard.py --fit`.
CXR_TEMPLATE_8x8: tuple[float, ...] = (
    -0.194, -0.126, -0.051, 0.069, 0.070, -0.049, -0.126, -0.201,
    -0.116, 0.002, -0.005, 0.052, 0.056, -0.006, -0.002, -0.118,
    -0.115, 0.021, -0.066, 0.049, 0.073, -0.056, 0.015, -0.117,
    -0.139, 0.001, -0.080, 0.091, 0.131, -0.031, 0.001, -0.142,
    -0.160, -0.025, -0.053, 0.132, 0.175, 0.040, -0.015, -0.163,
    -0.177, -0.028, -0.002, 0.155, 0.195, 0.093, -0.018, -0.180,
    -0.184, 0.049, 0.139, 0.207, 0.212, 0.142, 0.022, -0.193,
    -0.172, 0.129, 0.216, 0.240, 0.232, 0.189, 0.098, -0.186,
)


@dataclass(frozen=True)
class Bound:
    """A limit on one image statistic: beyond ``limit`` (on ``side``) the image does not look like a CXR."""

    stat: str
    side: Literal["low", "high"]
    typical: float
    limit: float
    reason: str

    def score(self, value: float) -> float:
        """0 at the typical value, 1 at the limit, growing beyond it."""
        if self.side == "low":
            return (self.typical - value) / (self.typical - self.limit)
        return (value - self.typical) / (self.limit - self.typical)


# Fitted on real X-rays by `benchmarks/ood_guard.py --fit` (see that script for the quantiles and margins used).
IMAGE_BOUNDS: tuple[Bound, ...] = (
    Bound("colourfulness", "high", 0, 10, "colour image"),
    Bound("dynamic_range", "low", 0.8158, 0.1975, "nearly uniform image"),
    Bound("entropy", "low", 5.413, 3.482, "too few grey levels (text, graphics or blank)"),
    Bound("peak_mass", "high", 0.06213, 0.4207, "one grey level dominates (background, text or graphics)"),
    Bound("smoothness", "low", 0.9874, 0.9478, "noise-like (no spatial structure)"),
    Bound("edge_density", "high", 0.02554, 0.05067, "too many sharp edges (text or a pattern)"),
    Bound("edge_density", "low", 0.02554, 0.005626, "no structure (a smooth gradient)"),
    Bound("template_corr", "low", 0.8296, -0.1159, "layout unlike a frontal chest X-ray"),
)


@dataclass(frozen=True)
class ImageStats:
    """Cheap statistics of one image (see the module docstring)."""

    colourfulness: float
    dynamic_range: float
    entropy: float
    peak_mass: float
    smoothness: float
    edge_density: float
    template_corr: float

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler & Süsstrunk's colourfulness of an (H, W, 3) RGB image (uint8, or float in [0, 1]); 0 for grey."""
    image = rgb.astype(np.float32)
    if rgb.dtype != np.uint8:
        image = image * 255.0
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    rg = r - g
    yb = 0.5 * (r + g) - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denominator = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denominator) if denominator > 0 else 1.0


def _zscore(values: np.ndarray) -> np.ndarray:
    centred = values - values.mean()
    return centred / (np.linalg.norm(centred) + 1e-9)


def downsample(gray: np.ndarray) -> np.ndarray:
    """The image (float in [0, 1], or uint8) squashed to STATS_SIZE x STATS_SIZE by area averaging, float32.

    Large images are first reduced by an integer factor (OpenCV's fast path for area averaging, ~6x faster than one
    fractional step on a 2-megapixel radiograph), dropping the last few rows/columns that do not fill a block.
    """
    image = np.asarray(gray)
    h, w = image.shape
    factor = min(h, w) // STATS_SIZE
    if factor >= 2:
        image = image[: h // factor * factor, : w // factor * factor]
        if image.dtype == np.uint8:  # exact block means from integer sums: no float copy of the full-size image
            rows = image.reshape(h // factor, factor, -1).sum(axis=1, dtype=np.uint32)
            sums = rows.reshape(h // factor, w // factor, factor).sum(axis=2)
            image = sums.astype(np.float32) / np.float32(255.0 * factor * factor)
        else:
            image = cv2.resize(image.astype(np.float32, copy=False), (w // factor, h // factor),
                               interpolation=cv2.INTER_AREA)
    image = image.astype(np.float32) / np.float32(255.0) if image.dtype == np.uint8 else image.astype(np.float32)
    return cv2.resize(image, (STATS_SIZE, STATS_SIZE), interpolation=cv2.INTER_AREA)


def thumbnail(gray: np.ndarray) -> np.ndarray:
    """The z-scored 8x8 thumbnail used for the layout check."""
    return _zscore(cv2.resize(downsample(gray), (THUMB_SIZE, THUMB_SIZE), interpolation=cv2.INTER_AREA).ravel())


def image_stats(gray: np.ndarray, colour: float = 0.0) -> ImageStats:
    """Statistics of a float (H, W) image in [0, 1]; ``colour`` is the colourfulness of its RGB original (0 if grey)."""
    return thumbnail_stats(downsample(gray), colour)


def thumbnail_stats(g: np.ndarray, colour: float = 0.0) -> ImageStats:
    """``image_stats`` of an image already reduced by ``downsample`` (float32 STATS_SIZE x STATS_SIZE)."""
    low, high = np.percentile(g, [1, 99])
    hist = np.histogram(g, bins=64, range=(0.0, 1.0))[0].astype(np.float64)
    hist /= max(hist.sum(), 1.0)
    nonzero = hist[hist > 0]
    dynamic_range = float(high - low)
    gradient = 0.5 * (np.abs(np.diff(g, axis=1)).mean() + np.abs(np.diff(g, axis=0)).mean())
    thumb = _zscore(cv2.resize(g, (THUMB_SIZE, THUMB_SIZE), interpolation=cv2.INTER_AREA).ravel())
    return ImageStats(
        colourfulness=float(colour),
        dynamic_range=dynamic_range,
        entropy=float(-(nonzero * np.log2(nonzero)).sum()),
        peak_mass=float(hist.max()),
        smoothness=0.5 * (_correlation(g[:, 1:], g[:, :-1]) + _correlation(g[1:], g[:-1])),
        edge_density=float(gradient / max(dynamic_range, 1e-3)),
        template_corr=float(thumb @ np.asarray(CXR_TEMPLATE_8x8, dtype=np.float64)),
    )


def image_score(stats: ImageStats, bounds: tuple[Bound, ...] = IMAGE_BOUNDS) -> tuple[float, tuple[str, ...]]:
    """The largest bound score of ``stats`` (>= 1 means flagged) and the reasons of the bounds it crosses."""
    values = stats.as_dict()
    scores = [(bound.score(values[bound.stat]), bound.reason) for bound in bounds]
    reasons = tuple(reason for score, reason in scores if score >= 1.0)
    return max(0.0, max(score for score, _ in scores)), reasons
