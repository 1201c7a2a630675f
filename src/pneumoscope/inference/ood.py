"""Out-of-distribution guard: flag inputs that do not look like a frontal chest X-ray instead of labelling them.

Two cheap checks, combined by taking the larger score (``score >= 1`` means flagged):

1. **Image statistics** (every model, PyTorch or ONNX): colourfulness of the original RGB, dynamic range, grey-level
   entropy, the mass of the most common grey level, neighbour-pixel correlation (noise has none), edge density (text,
   patterns) and the correlation of an 8x8 thumbnail with the mean frontal chest X-ray. Each statistic has a
   ``typical`` value and a ``limit`` fitted on real X-rays (``benchmarks/ood_guard.py --fit``); its score is 0 at the
   typical value and 1 at the limit.
2. **Model features** (where the model folder has ``ood_reference.safetensors`` or the ONNX file carries it): the
   Mahalanobis distance of the penultimate features to the training images' features, in a PCA subspace plus the
   residual, divided by a threshold set on the training features (``fit_feature_reference``).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from pneumoscope.errors import ModelError
from pneumoscope.files import atomic_write_bytes

STATS_SIZE = 128
THUMB_SIZE = 8
FEATURE_REFERENCE_FILE = "ood_reference.safetensors"

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


@dataclass(frozen=True)
class OODResult:
    """The guard's verdict on one image."""

    ood: bool
    score: float
    reasons: tuple[str, ...] = field(default_factory=tuple)


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
    """Statistics of a grey (H, W) image (float in [0, 1], or uint8); ``colour`` is the colourfulness of its RGB original (0 if grey)."""
    g = downsample(gray)
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


@dataclass
class FeatureReference:
    """Penultimate-feature statistics of the training images: PCA subspace + residual (a cheap Mahalanobis)."""

    mean: np.ndarray  # (D,)
    components: np.ndarray  # (K, D), orthonormal rows
    variances: np.ndarray  # (K,)
    residual_variance: float  # mean variance per dimension outside the subspace
    threshold: float  # distances above it are flagged

    def distance(self, features: np.ndarray) -> np.ndarray:
        """(N, D) features → (N,) squared Mahalanobis-like distances, normalised by the dimension."""
        centred = np.asarray(features, dtype=np.float64) - self.mean
        projected = centred @ self.components.T
        inside = (projected**2 / self.variances).sum(axis=1)
        residual = (centred**2).sum(axis=1) - (projected**2).sum(axis=1)
        outside = np.maximum(residual, 0.0) / self.residual_variance
        return (inside + outside) / self.mean.shape[0]

    def score(self, features: np.ndarray) -> np.ndarray:
        """(N,) scores; >= 1 means further from the training features than the threshold."""
        return self.distance(features) / self.threshold

    def to_bytes(self) -> bytes:
        from safetensors.numpy import save

        tensors = {
            "mean": self.mean.astype(np.float32),
            "components": self.components.astype(np.float32),
            "variances": self.variances.astype(np.float32),
        }
        extra = {"residual_variance": str(self.residual_variance), "threshold": str(self.threshold)}
        return save(tensors, metadata=extra)

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "feature reference") -> FeatureReference:
        from safetensors.numpy import load

        try:
            tensors = load(data)
            header_length = int.from_bytes(data[:8], "little")
            extra = json.loads(data[8 : 8 + header_length]).get("__metadata__", {})
            return cls(
                mean=tensors["mean"].astype(np.float64),
                components=tensors["components"].astype(np.float64),
                variances=tensors["variances"].astype(np.float64),
                residual_variance=float(extra["residual_variance"]),
                threshold=float(extra["threshold"]),
            )
        except Exception as error:  # noqa: BLE001 - any decoding failure is the same user error
            raise ModelError(
                f"unreadable OOD feature reference ({error}).",
                path=source,
                fix="delete it, or re-create it with pneumoscope.inference.ood.fit_feature_reference.",
            ) from None

    def save(self, folder: Path) -> Path:
        """Write ``folder/ood_reference.safetensors`` (atomically)."""
        return atomic_write_bytes(Path(folder) / FEATURE_REFERENCE_FILE, self.to_bytes())

    @classmethod
    def load(cls, folder: Path) -> FeatureReference | None:
        """The reference stored beside a model, or None where there is none."""
        path = Path(folder) / FEATURE_REFERENCE_FILE
        return cls.from_bytes(path.read_bytes(), str(path)) if path.is_file() else None

    def to_text(self) -> str:
        """Base64 text, for ONNX metadata."""
        return base64.b64encode(self.to_bytes()).decode("ascii")

    @classmethod
    def from_text(cls, text: str, source: str = "ONNX metadata") -> FeatureReference:
        return cls.from_bytes(base64.b64decode(text), source)


def fit_feature_reference(
    features: np.ndarray, n_components: int = 32, quantile: float = 0.995, margin: float = 1.5, seed: int = 0
) -> FeatureReference:
    """Fit the feature reference on (N, D) training features.

    The PCA is fitted on 80 % of the rows; the threshold is ``margin`` times the ``quantile`` of the distances of the
    other 20 % (distances of rows the PCA has seen are optimistically small).
    """
    features = np.asarray(features, dtype=np.float64)
    n, dim = features.shape
    if n < 20:
        raise ModelError(f"need at least 20 images to fit the OOD feature reference, got {n}.")
    order = np.random.default_rng(seed).permutation(n)
    fit_rows, held_rows = features[order[: int(0.8 * n)]], features[order[int(0.8 * n) :]]
    mean = fit_rows.mean(axis=0)
    centred = fit_rows - mean
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    k = max(1, min(n_components, len(singular) - 1, dim - 1))
    variances = singular[:k] ** 2 / max(len(fit_rows) - 1, 1)
    total = (singular**2).sum() / max(len(fit_rows) - 1, 1)
    residual_variance = max((total - variances.sum()) / max(dim - k, 1), 1e-12)
    floor = max(variances.max() * 1e-6, 1e-12)
    reference = FeatureReference(mean, vt[:k], np.maximum(variances, floor), float(residual_variance), 1.0)
    reference.threshold = float(margin * np.quantile(reference.distance(held_rows), quantile))
    return reference


def combine(image: tuple[float, tuple[str, ...]], feature_score: float | None) -> OODResult:
    """One verdict from the image-statistics score and the (optional) feature score."""
    score, reasons = image
    if feature_score is not None:
        if feature_score >= 1.0:
            reasons = (*reasons, "features unlike the training X-rays")
        score = max(score, float(feature_score))
    return OODResult(ood=score >= 1.0, score=float(score), reasons=reasons)
