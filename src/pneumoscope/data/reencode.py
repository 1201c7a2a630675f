"""Random re-encoding of an image, so that the file format and the archive's processing carry no signal.

``reencode(gray, rng)`` crops, resizes (down or up, with a random interpolation), re-processes (contrast window,
gamma, blur or sharpening, noise) and encodes the image as JPEG (random quality, grey or 3 equal channels) or PNG
(8 or 16 bit), then decodes the bytes back with the data layer's own decoder. Two sets of images that differ only
by their archive (size, encoding, processing) become indistinguishable by such trivial properties after it; what
is left to tell them apart is their content. The applicability check is fitted and tested on images made this way.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from pneumoscope.data.imaging import decode_image_bytes, unit_float

_INTERPOLATIONS = (cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_AREA, cv2.INTER_LANCZOS4)


@dataclass(frozen=True)
class Reencoded:
    """A re-encoded image: the decoded grey array, the file bytes it came from and the container format."""

    gray: np.ndarray  # float32 (H, W) in [0, 1]
    data: bytes
    format: str  # "jpeg" or "png"


def random_crop(gray: np.ndarray, rng: np.random.Generator, min_area: float = 0.7) -> np.ndarray:
    """A random crop keeping ``min_area``..1 of the area with an aspect change of up to ~25 %."""
    height, width = gray.shape
    area = rng.uniform(min_area, 1.0)
    aspect = np.exp(rng.uniform(np.log(0.8), np.log(1.25)))
    crop_h = round(min(height, height * np.sqrt(area / aspect)))
    crop_w = round(min(width, width * np.sqrt(area * aspect)))
    top = int(rng.integers(0, height - crop_h + 1))
    left = int(rng.integers(0, width - crop_w + 1))
    return gray[top : top + crop_h, left : left + crop_w]


def random_resize(gray: np.ndarray, rng: np.random.Generator, sides: tuple[int, int] = (160, 1024)) -> np.ndarray:
    """Resized so that the longer side is a random length in ``sides``, with a random interpolation."""
    height, width = gray.shape
    longest = int(rng.integers(sides[0], sides[1] + 1))
    scale = longest / max(height, width)
    size = (max(8, round(width * scale)), max(8, round(height * scale)))
    interpolation = _INTERPOLATIONS[int(rng.integers(len(_INTERPOLATIONS)))]
    return np.clip(cv2.resize(gray, size, interpolation=interpolation), 0.0, 1.0)


def random_reprocess(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Contrast window, gamma, then one of blur / unsharp mask / nothing, then (sometimes) noise."""
    low, high = np.percentile(gray, [rng.uniform(0, 3), rng.uniform(97, 100)])
    image = np.clip((gray - low) / max(high - low, 1e-3), 0.0, 1.0)
    image = image ** np.exp(rng.uniform(np.log(0.6), np.log(1.6)))
    out_low, out_high = rng.uniform(0.0, 0.1), rng.uniform(0.9, 1.0)
    image = out_low + (out_high - out_low) * image
    kind = rng.random()
    if kind < 0.3:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.4, 1.6))
    elif kind < 0.6:
        blurred = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.8, 2.5))
        image = image + rng.uniform(0.3, 1.2) * (image - blurred)
    if rng.random() < 0.4:
        image = image + rng.normal(0.0, rng.uniform(0.003, 0.025), image.shape)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def encode(gray: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    """The image as a JPEG (quality 40-98, grey or 3 equal channels) or a PNG (8 or 16 bit)."""
    buffer = io.BytesIO()
    choice = rng.random()
    if choice < 0.5:
        pixels = np.rint(gray * 255).astype(np.uint8)
        image = Image.fromarray(pixels) if rng.random() < 0.5 else Image.fromarray(np.stack([pixels] * 3, -1))
        image.save(buffer, format="JPEG", quality=int(rng.integers(40, 99)))
        return buffer.getvalue(), "jpeg"
    if choice < 0.8:
        Image.fromarray(np.rint(gray * 255).astype(np.uint8)).save(buffer, format="PNG")
    else:
        Image.fromarray(np.rint(gray * 65535).astype(np.uint16)).save(buffer, format="PNG")
    return buffer.getvalue(), "png"


def reencode(gray: np.ndarray, rng: np.random.Generator, sides: tuple[int, int] = (160, 1024)) -> Reencoded:
    """Crop, resize (longer side in ``sides``), re-process and re-encode ``gray`` (float (H, W) in [0, 1]); decoded
    back by the data layer."""
    image = random_reprocess(random_resize(random_crop(np.asarray(gray, dtype=np.float32), rng), rng, sides), rng)
    data, fmt = encode(image, rng)
    decoded = decode_image_bytes(data, f"reencoded.{'jpg' if fmt == 'jpeg' else 'png'}").gray
    return Reencoded(unit_float(decoded), data, fmt)  # the decoders keep 8-bit images as uint8
