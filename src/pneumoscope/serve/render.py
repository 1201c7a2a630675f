"""PNGs of an explanation for the API and the web page: the image, the coloured heatmap and the overlay."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class ExplainPngs:
    """Encoded PNGs, all ``width`` x ``height``; ``image`` and ``heatmap`` are empty unless asked for."""

    overlay: bytes
    image: bytes
    heatmap: bytes
    width: int
    height: int


def display_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """(height, width) scaled down so that the longest side is at most ``max_side`` (never scaled up)."""
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def _resize(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    height, width = size
    if array.shape[:2] == (height, width):
        return array
    shrinking = height < array.shape[0]
    return cv2.resize(array, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of a uint8 gray (H, W), RGB (H, W, 3) or RGBA (H, W, 4) array."""
    if array.ndim == 3:
        code = cv2.COLOR_RGBA2BGRA if array.shape[2] == 4 else cv2.COLOR_RGB2BGR
        array = cv2.cvtColor(array, code)
    ok, buffer = cv2.imencode(".png", np.ascontiguousarray(array))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buffer.tobytes()


def heatmap_rgba(heatmap: np.ndarray) -> np.ndarray:
    """Jet-coloured RGBA of a heatmap in [0, 1]; alpha grows with the heat (cold regions stay see-through)."""
    heat = np.clip(np.nan_to_num(heatmap.astype(np.float32)), 0.0, 1.0)
    colour = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)
    rgb = cv2.cvtColor(colour, cv2.COLOR_BGR2RGB)
    alpha = (np.sqrt(heat) * 255).astype(np.uint8)
    return np.dstack([rgb, alpha])


def explain_pngs(image: np.ndarray, result: dict, max_side: int, all_layers: bool) -> ExplainPngs:
    """Encode the overlay (and, with ``all_layers``, the image and the heatmap) at most ``max_side`` px."""
    size = display_size(image.shape[0], image.shape[1], max_side)
    overlay = _as_rgb(np.asarray(result["overlay"]), image.shape)
    overlay_png = encode_png(_resize(overlay, size))
    image_png = heat_png = b""
    if all_layers:
        gray = (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)
        image_png = encode_png(_resize(gray, size))
        heat = _resize(np.asarray(result["heatmap"], dtype=np.float32), size)
        heat_png = encode_png(heatmap_rgba(heat))
    return ExplainPngs(overlay_png, image_png, heat_png, width=size[1], height=size[0])


def _as_rgb(overlay: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if overlay.dtype != np.uint8:
        overlay = (np.clip(overlay, 0.0, 1.0) * 255).round().astype(np.uint8)
    if overlay.ndim == 2:
        overlay = np.dstack([overlay] * 3)
    if overlay.shape[:2] != tuple(shape[:2]):
        overlay = cv2.resize(overlay, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return overlay
