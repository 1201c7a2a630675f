"""The one preprocessing step shared by the cache, training, evaluation and prediction.

A grey image of any size is quantised to uint8, squashed to ``size x size`` (the public 224 px Kermany copies were
squashed the same way, without keeping the aspect ratio), antialiased when shrinking, and optionally contrast
equalised with CLAHE. Training and prediction must call this same function so that their inputs match. Working in
uint8 keeps a full-resolution 8-bit image as it was decoded (no float copy of millions of pixels). Files are decoded
for it at ``decode_side(size)``: large JPEGs at reduced scale (``data.imaging.decode_image_bytes``), the same way
for the cache and for prediction.
"""

from __future__ import annotations

import cv2
import numpy as np

from pneumoscope.data.image_stats import STATS_SIZE
from pneumoscope.errors import ConfigError, DataError

# Bump when the output of ``preprocess`` changes for the same input: it is part of the cache key.
# 2: quantised to uint8, then one 2-D resize (1: resized in float, one axis at a time, then quantised); the two differ
# on about 2 pixels in 100,000, by one grey level.
# 3: files decoded at ``decode_side`` (JPEGs twice as large as the input or more are shrunk on load).
PREPROCESS_VERSION = 3

CLAHE_CLIP_LIMIT = 2.0
CLAHE_TILE_GRID = (8, 8)
MIN_SIZE = 8


def preprocess(gray: np.ndarray, size: int, clahe: bool = False) -> np.ndarray:
    """Resize a grey image (uint8, uint16, or float in [0, 1]) to uint8 ``(size, size)``; CLAHE on it if asked."""
    size = check_image_size(size)
    out = resize_square(as_uint8(gray), size)
    if clahe:
        out = apply_clahe(out)
    return out


def decode_side(size: int) -> int:
    """The side a file is decoded for when it becomes a ``size`` px input (and its image statistics, at STATS_SIZE,
    are measured): ``decode_image_bytes``'s ``shrink_to``."""
    return max(int(size), STATS_SIZE)


def preprocess_settings(size: int, clahe: bool) -> dict[str, object]:
    """The settings that determine ``preprocess``'s output (used in cache keys and saved with models)."""
    return {"size": int(size), "clahe": bool(clahe), "clahe_clip_limit": CLAHE_CLIP_LIMIT,
            "clahe_tile_grid": list(CLAHE_TILE_GRID), "version": PREPROCESS_VERSION}


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Squash ``image`` (uint8 or float32) to ``(size, size)``: area averaging (antialiased) where an axis shrinks,
    bilinear interpolation where it grows; one 2-D pass unless one axis shrinks while the other grows (so that uint8
    is rounded once)."""
    height, width = image.shape
    shrinks = size < width or size < height
    grows = size > width or size > height
    if not (shrinks and grows):
        if not shrinks and not grows:
            return image
        return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrinks else cv2.INTER_LINEAR)
    image = cv2.resize(image, (size, height), interpolation=_interpolation(width, size))
    return cv2.resize(image, (size, size), interpolation=_interpolation(height, size))


def apply_clahe(image: np.ndarray) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of a uint8 image (OpenCV)."""
    return cv2.createCLAHE(clipLimit=CLAHE_CLIP_LIMIT, tileGridSize=CLAHE_TILE_GRID).apply(image)


def _interpolation(source: int, target: int) -> int:
    return cv2.INTER_AREA if target < source else cv2.INTER_LINEAR


def check_image_size(size: int) -> int:
    """``size`` as an int, if it is a valid square input side (``ConfigError`` otherwise)."""
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < MIN_SIZE:
        raise ConfigError(f"invalid image size {size!r}.", fix=f"use an integer of at least {MIN_SIZE} (e.g. 224).")
    return int(size)


def as_uint8(gray: np.ndarray) -> np.ndarray:
    """A grey image (uint8, uint16, or float in [0, 1]) as uint8 (H, W): uint8 as it is, the others rounded."""
    array = np.asarray(gray)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2 or min(array.shape) == 0:
        raise DataError(f"preprocess expects a 2-D grey image, got an array of shape {array.shape}.",
                        fix="pass the output of pneumoscope.data.imaging.load_image.")
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return np.rint(array.astype(np.float32) * (255.0 / 65535.0)).astype(np.uint8)
    if not np.issubdtype(array.dtype, np.floating):
        raise DataError(f"preprocess expects float values in [0, 1] or uint8, got {array.dtype}.",
                        fix="pass the output of pneumoscope.data.imaging.load_image.")
    array = array.astype(np.float32, copy=False)
    if not np.all(np.isfinite(array)):
        raise DataError("image holds NaN or infinite values.", fix="pass the output of load_image.")
    return np.rint(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
