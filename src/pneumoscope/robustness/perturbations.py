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
| zoom_out        | content shrunk to 0.92 0.85 0.78 0.7 0.6 of each side, centred, black border | wider field of view: the chest smaller in the frame |
| shift           | content moved by 0.03 0.06 0.09 0.12 0.15 of the side, direction from the seed, black border | patient off-centre |
| aspect          | one side (from the seed) cropped to 0.93 0.87 0.8 0.73 0.65 of its length, stretched back | another aspect ratio of the original (squashed copies, other detectors) |
| invert          | one level: 1 - x                             | a DICOM MONOCHROME1 image read as MONOCHROME2 |

Each perturbation has a *kind*, the groups in which the stress test is summarised and the generalisation study weighs
it: ``photometric`` (contrast, gamma, brightness), ``framing`` (rotation, crop, zoom_out, shift, aspect),
``sharpness`` (blur, sharpen, downsample), ``noise`` (Gaussian and Poisson noise, JPEG) and ``inversion``.

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
    kind: str
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


def _placed(image: np.ndarray, content: np.ndarray, top: int, left: int) -> np.ndarray:
    """``content`` pasted on a black canvas of ``image``'s shape at (``top``, ``left``), clipped to the canvas."""
    canvas = np.zeros_like(image)
    height, width = image.shape
    rows = slice(max(0, top), min(height, top + content.shape[0]))
    cols = slice(max(0, left), min(width, left + content.shape[1]))
    canvas[rows, cols] = content[rows.start - top:rows.stop - top, cols.start - left:cols.stop - left]
    return canvas


def _zoom_out(image: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    height, width = image.shape
    small = cv2.resize(image, (max(1, round(width * factor)), max(1, round(height * factor))),
                       interpolation=cv2.INTER_AREA)
    return _placed(image, small, (height - small.shape[0]) // 2, (width - small.shape[1]) // 2)


def _shift(image: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    height, width = image.shape
    angle = rng.uniform(0.0, 2.0 * np.pi)
    return _placed(image, image, round(np.sin(angle) * fraction * height), round(np.cos(angle) * fraction * width))


def _aspect(image: np.ndarray, keep: float, rng: np.random.Generator) -> np.ndarray:
    height, width = image.shape
    if rng.random() < 0.5:
        kept = max(1, round(width * keep))
        window = image[:, (width - kept) // 2:(width - kept) // 2 + kept]
    else:
        kept = max(1, round(height * keep))
        window = image[(height - kept) // 2:(height - kept) // 2 + kept, :]
    return cv2.resize(window, (width, height), interpolation=cv2.INTER_LINEAR)


def _invert(image: np.ndarray, enabled: bool, rng: np.random.Generator) -> np.ndarray:
    return 1.0 - image


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


_REGISTRY: dict[str, Perturbation] = {
    p.name: p
    for p in (
        Perturbation("contrast_down", "photometric", (0.85, 0.75, 0.65, 0.55, 0.45), "factor about the mean",
                     "lower contrast (flat LUT, scatter, over-exposure)", False, _contrast),
        Perturbation("contrast_up", "photometric", (1.1, 1.2, 1.3, 1.45, 1.6), "factor about the mean",
                     "higher contrast (hard windowing), clipped", False, _contrast),
        Perturbation("gamma_down", "photometric", (0.87, 0.77, 0.67, 0.57, 0.5), "gamma",
                     "gamma < 1: brighter mid-tones (another display LUT)", False, _gamma),
        Perturbation("gamma_up", "photometric", (1.15, 1.3, 1.5, 1.75, 2.0), "gamma",
                     "gamma > 1: darker mid-tones (another display LUT)", False, _gamma),
        Perturbation("brightness_down", "photometric", (-0.03, -0.06, -0.1, -0.14, -0.18), "offset",
                     "darker (window level moved at export)", False, _brightness),
        Perturbation("brightness_up", "photometric", (0.03, 0.06, 0.1, 0.14, 0.18), "offset",
                     "brighter (window level moved at export)", False, _brightness),
        Perturbation("gaussian_blur", "sharpness", (0.5, 0.75, 1.0, 1.5, 2.0), "sigma, reference px",
                     "blur (detector MTF, motion, smoothing)", False, _gaussian_blur),
        Perturbation("sharpen", "sharpness", (0.25, 0.5, 0.75, 1.0, 1.5), "unsharp-mask amount (sigma 2 reference px)",
                     "vendor edge enhancement", False, _sharpen),
        Perturbation("gaussian_noise", "noise", (0.01, 0.015, 0.025, 0.035, 0.05), "std per stored pixel",
                     "additive Gaussian noise (electronics, scanned film)", True, _gaussian_noise),
        Perturbation("poisson_noise", "noise", (10000, 5000, 2500, 1200, 600), "photons per stored pixel",
                     "quantum noise of a low-dose exposure", True, _poisson_noise),
        Perturbation("jpeg", "noise", (70, 50, 30, 20, 10), "JPEG quality",
                     "lossy JPEG re-encoding (PACS / web exports)", False, _jpeg),
        Perturbation("downsample", "sharpness", (0.75, 0.6, 0.5, 0.4, 0.3), "short side x reference size",
                     "down-sampling then up-sampling back (low-resolution export)", False, _downsample),
        Perturbation("rotation", "framing", (2.0, 4.0, 6.0, 8.0, 10.0), "degrees (direction from the seed)",
                     "small rotation with black corners (positioning)", True, _rotation),
        Perturbation("crop", "framing", (0.95, 0.9, 0.85, 0.8, 0.75), "share of each side kept",
                     "tighter field of view, zoomed back to size", True, _crop),
        Perturbation("zoom_out", "framing", (0.92, 0.85, 0.78, 0.7, 0.6), "share of each side the content keeps",
                     "wider field of view: the image shrunk in a black frame", False, _zoom_out),
        Perturbation("shift", "framing", (0.03, 0.06, 0.09, 0.12, 0.15), "share of the side (direction from the seed)",
                     "off-centre: the image moved, black border", True, _shift),
        Perturbation("aspect", "framing", (0.93, 0.87, 0.8, 0.73, 0.65), "share of one side kept (side from the seed)",
                     "another aspect ratio: one side cropped and stretched back", True, _aspect),
        Perturbation("invert", "inversion", (True,), "-",
                     "inverted intensities (MONOCHROME1 read as MONOCHROME2)", False, _invert),
    )
}


KINDS: tuple[str, ...] = ("photometric", "framing", "sharpness", "noise", "inversion")


def list_perturbations(kind: str | None = None) -> list[str]:
    """Names of the registered perturbations (of one ``kind``, when given), in registry order."""
    if kind is not None and kind not in KINDS:
        raise ConfigError(f"unknown perturbation kind {kind!r}.", fix=f"use one of: {', '.join(KINDS)}.")
    return [name for name, p in _REGISTRY.items() if kind is None or p.kind == kind]


def get_perturbation(name: str) -> Perturbation:
    """The registered perturbation ``name`` (ConfigError naming the valid ones otherwise)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown perturbation {name!r}.",
                          fix=f"use one of: {', '.join(_REGISTRY)}.") from None


def describe_perturbations() -> list[dict[str, Any]]:
    """One row per perturbation and severity (name, kind, severity, parameter, unit, description), for reports."""
    return [
        {"perturbation": p.name, "kind": p.kind, "severity": s, "parameter": p.parameter(s), "unit": p.unit,
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
