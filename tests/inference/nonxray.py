"""Images that are not chest X-rays, for the scope tests (photos, blanks, noise, text, patterns, CT-like slices)."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np


def colour_photo(rng: np.random.Generator, size: int = 192) -> np.ndarray:
    """Sky over textured ground with a few coloured objects (uint8 RGB)."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    sky = np.stack([0.4 + 0.3 * yy, 0.6 + 0.2 * yy, 0.9 - 0.1 * yy], -1)
    ground = rng.uniform(0.1, 0.7, 3) * cv2.GaussianBlur(rng.uniform(0.5, 1.0, (size, size)), (0, 0), 4)[..., None]
    image = np.where((yy < rng.uniform(0.3, 0.7))[..., None], sky, ground)
    for _ in range(4):
        cx, cy, r = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.05, 0.2)
        image[(xx - cx) ** 2 + (yy - cy) ** 2 < r**2] = rng.uniform(0, 1, 3)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def blank(rng: np.random.Generator, size: int = 128) -> np.ndarray:
    return np.full((size, size), int(rng.integers(0, 256)), np.uint8)


def noise(rng: np.random.Generator, size: int = 128) -> np.ndarray:
    return rng.integers(0, 256, (size, size), dtype=np.uint8)


def text_page(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    image = np.full((size, size), 255, np.uint8)
    for y in range(20, size - 5, 18):
        words = " ".join(rng.choice(["chest", "report", "normal", "findings", "lorem", "ipsum"], 4))
        cv2.putText(image, words, (5, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, 0, 1, cv2.LINE_AA)
    return image


def checkerboard(rng: np.random.Generator, size: int = 128) -> np.ndarray:
    n = int(rng.choice([4, 8, 16]))
    yy, xx = np.mgrid[0:size, 0:size] * n // size
    return (((yy + xx) % 2) * 200 + 20).astype(np.uint8)


def ct_slice(rng: np.random.Generator, size: int = 192) -> np.ndarray:
    """Axial-CT-like phantom: body ellipse on black, two dark lungs, a bright spine."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    image = np.zeros((size, size), np.float32)
    body = ((xx - 0.5) / 0.42) ** 2 + ((yy - 0.5) / 0.32) ** 2 < 1
    image[body] = 0.45
    for cx in (0.33, 0.67):
        image[((xx - cx) / 0.13) ** 2 + ((yy - 0.48) / 0.2) ** 2 < 1] = 0.06
    image[((xx - 0.5) / 0.05) ** 2 + ((yy - 0.72) / 0.05) ** 2 < 1] = 0.95
    image += rng.normal(0, 0.03, image.shape) * body
    return (np.clip(cv2.GaussianBlur(image, (0, 0), 1.0), 0, 1) * 255).astype(np.uint8)


NON_XRAYS: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "colour photo": colour_photo,
    "blank": blank,
    "noise": noise,
    "text": text_page,
    "checkerboard": checkerboard,
    "CT slice": ct_slice,
}
