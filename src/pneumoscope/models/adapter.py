"""The input adapter: grey images in [0, 1] → what the backbone was pretrained on.

It lives inside the model, so that an exported ONNX file, the server and ``predict`` feed the same (B, 1, H, W)
[0, 1] tensor that training did and need no preprocessing of their own.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

# Per-image standardisation maps every image to these [0, 1]-scale statistics (about those of natural images), so
# that the backbone's own normalisation afterwards yields inputs in the range its weights were trained on.
STANDARDIZED_MEAN = 0.5
STANDARDIZED_STD = 0.25
_MIN_STD = 1e-3  # a constant image becomes flat grey instead of dividing by zero


class InputAdapter(nn.Module):
    """(B, 1, H, W) float in [0, 1] → optional per-image z-score → ``channels`` channels → (x - mean) / std."""

    def __init__(self, channels: int, mean: Sequence[float], std: Sequence[float], standardize: bool = False):
        super().__init__()
        if len(mean) not in (1, channels) or len(std) != len(mean):
            raise ValueError(f"mean/std of length {len(mean)}/{len(std)} do not fit {channels} channels")
        self.channels = channels
        self.standardize = standardize
        # Not persistent: derived from the architecture's spec, so the weights file holds only learned tensors.
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        exporting = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
        if not exporting and (x.dim() != 4 or x.shape[1] not in (1, self.channels)):
            raise ValueError(f"expected images (B, 1, H, W), got shape {tuple(x.shape)}")
        if self.standardize:
            x = standardize_per_image(x)
        if self.channels != 1:  # the exported graph always takes one grey channel
            x = x.expand(-1, self.channels, -1, -1)
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, standardize={self.standardize}"


def standardize_per_image(x: torch.Tensor) -> torch.Tensor:
    """Z-score each image over its pixels, then rescale to mean 0.5 / std 0.25 (the [0, 1] scale)."""
    dims = tuple(range(1, x.dim()))
    mean = x.mean(dim=dims, keepdim=True)  # keepdim (no reshape): the ONNX exporter keeps the spatial sizes
    std = x.std(dim=dims, correction=0, keepdim=True).clamp_min(_MIN_STD)
    return (x - mean) / std * STANDARDIZED_STD + STANDARDIZED_MEAN
