"""Acquisition-shift perturbations of a grayscale chest X-ray, each at 5 severities (the ImageNet-C idea).

Every perturbation takes a float32 ``(H, W)`` image in [0, 1] (0 = black, as ``data.imaging.load_image`` returns it)
and returns one of the same shape and dtype, clipped to [0, 1]. ``perturb(image, name, severity, seed)`` is
deterministic for one seed; only the random ones (noise, rotation direction, crop position) use it.

Where a perturbation acts matters, because images come at 224 px (the Kermany copy, the COVID-19 Radiography DB) or
at 1,000-2,500 px (originals):

- spatial sizes (blur and sharpening sigma, down-sampling target) are given in *reference pixels*: pixels of the
  image seen at ``REFERENCE_SIZE`` = 224 px on its short side, i.e. a fixed share of the field of view, so a
  severity means the same thing to the model whatever the stored resolution;
- noise and JPEG act per *stored* pixel, where they happen physically (detector pixel, encoder block); on a large
  original, preprocessing's down-sizing then averages part of them away, as it does in real use.

Severities (chosen for what different scanners, post-processing and export pipelines produce; 1 = mild,
5 = the worst one still sees in practice):

| name            | parameter per severity 1..5                  | what it stands for |
|-----------------|----------------------------------------------|--------------------|
| contrast_down   | factor about the image mean 0.85 0.75 0.65 0.55 0.45 | flat look-up table, scatter without grid, over-exposure |
| contrast_up     | factor 1.1 1.2 1.3 1.45 1.6 (clipped)        | hard windowing / vendor "high contrast" LUT |
| gamma_down      | gamma 0.87 0.77 0.67 0.57 0.5 (brighter mid-tones) | another display LUT / VOI-LUT |
| gamma_up        | gamma 1.15 1.3 1.5 1.75 2.0 (darker mid-tones) | same, other direction |
| brightness_down | offset -0.03 -0.06 -0.1 -0.14 -0.18         | window level moved at export |
| brightness_up   | offset +0.03 +0.06 +0.1 +0.14 +0.18         | same, other direction |
| gaussian_blur   | sigma 0.5 0.75 1.0 1.5 2.0 reference px      | detector MTF, patient motion, smoothing filters |
| sharpen         | unsharp mask (sigma 2 ref px) amount 0.25 0.5 0.75 1.0 1.5 | vendor edge enhancement (multi-scale processing) |
| gaussian_noise  | std 0.01 0.015 0.025 0.035 0.05 per stored pixel | electronic noise, grainy scans of film |
| poisson_noise   | photons per stored pixel 10000 5000 2500 1200 600 | quantum noise of low-dose / portable exposures |
| jpeg            | quality 70 50 30 20 10                       | lossy PACS / web / messaging exports |
| downsample      | short side 0.75 0.6 0.5 0.4 0.3 x the reference, then back | low-resolution exports and thumbnails |
| rotation        | 2 4 6 8 10 degrees, direction from the seed, black corners | patient positioning, scanned films |
| crop            | keep 0.95 0.9 0.85 0.8 0.75 of each side, position from the seed, zoom back | other collimation / field of view |
| invert          | one level: 1 - x                             | a DICOM MONOCHROME1 image read as MONOCHROME2 |

Poisson noise works in the attenuation domain: the display value x is taken as the line integral ``mu = 4 x`` (air
black, bone and mediastinum bright), photons ``~ Poisson(N0 exp(-mu))``, read back as ``-log(counts / N0) / 4`` -
so, as on a real radiograph, the dense (bright) regions get the most noise.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image

from pneumoscope.errors import ConfigError, DataError

REFERENCE_SIZE = 224
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)

# Display value -> attenuation line integral for Poisson noise (exp(-4) ~ 2 % transmission at white).
_MU_MAX = 4.0

Seed = int | Sequence[int]
_Apply = Callable[[np.ndarray, Any, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Perturbation:
    """One acquisition shift: its parameter at each severity (index 0 = severity 1) and how to apply it."""

    name: str
    levels: tuple[Any, ...]
    unit: str
    description: str
    random: bool
    apply: _Apply

    @property
    def severities(self) -> tuple[int, ...]:
        return tuple(range(1, len(self.levels) + 1))

    def parameter(self, severity: int) -> Any:
        if severity not in self.severities:
            raise ConfigError(
                f"perturbation {self.name!r} has no severity {severity!r}.",
                fix=f"use one of {list(self.severities)}.",
            )
        return self.levels[severity - 1]


def _reference_scale(image: np.ndarray) -> float:
    """Stored pixels per reference pixel (short side / 224)."""
    return min(image.shape) / REFERENCE_SIZE


def _contrast(image: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    mean = float(image.mean())
    return (image - mean) * factor + mean


def _gamma(image: np.ndarray, gamma: float, rng: np.random.Generator) -> np.ndarray:
    return np.power(image, gamma)


def _brightness(image: np.ndarray, offset: float, rng: np.random.Generator) -> np.ndarray:
    return image + offset


def _blurred(image: np.ndarray, sigma_reference: float) -> np.ndarray:
    sigma = sigma_reference * _reference_scale(image)
    return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)


def _gaussian_blur(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return _blurred(image, sigma)


def _sharpen(image: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    return image + amount * (image - _blurred(image, 2.0))


def _gaussian_noise(image: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    return image + np.float32(std) * rng.standard_normal(image.shape, dtype=np.float32)


def _poisson_noise(image: np.ndarray, photons: float, rng: np.random.Generator) -> np.ndarray:
    expected = photons * np.exp(-_MU_MAX * image.astype(np.float64))
    # Half a photon stands in for zero counts, so that fully blocked pixels read as white, not infinity.
    counts = np.maximum(rng.poisson(expected), 0.5)
    return (-np.log(counts / photons) / _MU_MAX).astype(np.float32)


def _jpeg(image: np.ndarray, quality: int, rng: np.random.Generator) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(_to_uint8(image), mode="L").save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("L"), dtype=np.float32) / 255.0


def _downsample(image: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    height, width = image.shape
    short = min(height, width)
    target_short = max(8, round(factor * min(short, REFERENCE_SIZE)))
    if target_short >= short:
        return image
    size = (max(1, round(width * target_short / short)), max(1, round(height * target_short / short)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def _rotation(image: np.ndarray, degrees: float, rng: np.random.Generator) -> np.ndarray:
    height, width = image.shape
    angle = degrees if rng.random() < 0.5 else -degrees
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2.0, (height - 1) / 2.0), angle, 1.0)
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)


def _crop(image: np.ndarray, keep: float, rng: np.random.Generator) -> np.ndarray:
    height, width = image.shape
    crop_h, crop_w = max(1, round(height * keep)), max(1, round(width * keep))
    top = int(rng.integers(0, height - crop_h + 1))
    left = int(rng.integers(0, width - crop_w + 1))
    window = image[top:top + crop_h, left:left + crop_w]
    return cv2.resize(window, (width, height), interpolation=cv2.INTER_LINEAR)


def _invert(image: np.ndarray, enabled: bool, rng: np.random.Generator) -> np.ndarray:
    return 1.0 - image


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


_REGISTRY: dict[str, Perturbation] = {
    p.name: p
    for p in (
        Perturbation("contrast_down", (0.85, 0.75, 0.65, 0.55, 0.45), "factor about the mean",
                     "lower contrast (flat LUT, scatter, over-exposure)", False, _contrast),
        Perturbation("contrast_up", (1.1, 1.2, 1.3, 1.45, 1.6), "factor about the mean",
                     "higher contrast (hard windowing), clipped", False, _contrast),
        Perturbation("gamma_down", (0.87, 0.77, 0.67, 0.57, 0.5), "gamma",
                     "gamma < 1: brighter mid-tones (another display LUT)", False, _gamma),
        Perturbation("gamma_up", (1.15, 1.3, 1.5, 1.75, 2.0), "gamma",
                     "gamma > 1: darker mid-tones (another display LUT)", False, _gamma),
        Perturbation("brightness_down", (-0.03, -0.06, -0.1, -0.14, -0.18), "offset",
                     "darker (window level moved at export)", False, _brightness),
        Perturbation("brightness_up", (0.03, 0.06, 0.1, 0.14, 0.18), "offset",
                     "brighter (window level moved at export)", False, _brightness),
        Perturbation("gaussian_blur", (0.5, 0.75, 1.0, 1.5, 2.0), "sigma, reference px",
                     "blur (detector MTF, motion, smoothing)", False, _gaussian_blur),
        Perturbation("sharpen", (0.25, 0.5, 0.75, 1.0, 1.5), "unsharp-mask amount (sigma 2 reference px)",
                     "vendor edge enhancement", False, _sharpen),
        Perturbation("gaussian_noise", (0.01, 0.015, 0.025, 0.035, 0.05), "std per stored pixel",
                     "additive Gaussian noise (electronics, scanned film)", True, _gaussian_noise),
        Perturbation("poisson_noise", (10000, 5000, 2500, 1200, 600), "photons per stored pixel",
                     "quantum noise of a low-dose exposure", True, _poisson_noise),
        Perturbation("jpeg", (70, 50, 30, 20, 10), "JPEG quality",
                     "lossy JPEG re-encoding (PACS / web exports)", False, _jpeg),
        Perturbation("downsample", (0.75, 0.6, 0.5, 0.4, 0.3), "short side x reference size",
                     "down-sampling then up-sampling back (low-resolution export)", False, _downsample),
        Perturbation("rotation", (2.0, 4.0, 6.0, 8.0, 10.0), "degrees (direction from the seed)",
                     "small rotation with black corners (positioning)", True, _rotation),
        Perturbation("crop", (0.95, 0.9, 0.85, 0.8, 0.75), "share of each side kept",
                     "tighter field of view, zoomed back to size", True, _crop),
        Perturbation("invert", (True,), "-",
                     "inverted intensities (MONOCHROME1 read as MONOCHROME2)", False, _invert),
    )
}


def list_perturbations() -> list[str]:
    """Names of all registered perturbations, in registry order."""
    return list(_REGISTRY)


def get_perturbation(name: str) -> Perturbation:
    """The registered perturbation ``name`` (ConfigError naming the valid ones otherwise)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown perturbation {name!r}.",
                          fix=f"use one of: {', '.join(_REGISTRY)}.") from None


def describe_perturbations() -> list[dict[str, Any]]:
    """One row per perturbation and severity (name, severity, parameter, unit, description), for reports."""
    return [
        {"perturbation": p.name, "severity": s, "parameter": p.parameter(s), "unit": p.unit,
         "description": p.description}
        for p in _REGISTRY.values() for s in p.severities
    ]


def _rng(seed: Seed, name: str, severity: int) -> np.random.Generator:
    entropy = [int(s) for s in np.atleast_1d(np.asarray(seed, dtype=np.int64))]
    if any(s < 0 for s in entropy):
        raise ConfigError(f"seed {seed!r} is negative.", fix="use a seed >= 0.")
    return np.random.default_rng(np.random.SeedSequence([*entropy, zlib.crc32(name.encode()), severity]))


def _check_image(image: np.ndarray) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim != 2 or array.size == 0:
        raise DataError(f"expected a grayscale (H, W) image, got an array of shape {array.shape}.",
                        fix="pass images as returned by pneumoscope.data.imaging.load_image.")
    return np.clip(array.astype(np.float32, copy=False), 0.0, 1.0)


def perturb(image: np.ndarray, name: str, severity: int, seed: Seed = 0) -> np.ndarray:
    """``image`` (float32 ``(H, W)`` in [0, 1]) under perturbation ``name`` at ``severity``; same shape, float32.

    The result depends only on the image, ``name``, ``severity`` and ``seed`` (an int or a sequence of ints, e.g.
    ``(seed, image_index)``).
    """
    perturbation = get_perturbation(name)
    parameter = perturbation.parameter(severity)
    clean = _check_image(image)
    result = perturbation.apply(clean, parameter, _rng(seed, name, severity))
    return np.clip(result, 0.0, 1.0).astype(np.float32, copy=False)
