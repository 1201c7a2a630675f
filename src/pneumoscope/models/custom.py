"""The research's own small networks (random init, one input channel).

Each builder returns a backbone (features) and, where the paper's network has its own classifier, a factory of that
"native" head; ``head="replace"`` uses the native head, ``head="gap_fc"`` the generic one. The flatten before the
first FC layer of the originals is a global average pool here, so that every input size works.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from pneumoscope.models.backbones import Backbone
from pneumoscope.models.heads import GlobalAvgPool
from pneumoscope.models.spec import ModelSpec

NativeHead = Callable[[int, float], nn.Module]  # (num_outputs, dropout) -> head


class ALReLU(nn.Module):
    """Absolute leaky ReLU: f(x) = x for x > 0, |0.01 x| otherwise."""

    def __init__(self, slope: float = 0.01):
        super().__init__()
        self.slope = slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x > 0, x, (self.slope * x).abs())


def conv_block(in_ch: int, out_ch: int, kernel: int, act: nn.Module, dropout: float = 0.0) -> nn.Sequential:
    """conv ('same' padding) → batch-norm → activation → 2x2 max-pool → dropout."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_ch),
        act,
        nn.MaxPool2d(2),
    ]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class ConvBackbone(Backbone):
    """A stack of conv blocks; the last block's output is the feature map."""

    def __init__(self, blocks: Sequence[nn.Module], num_features: int):
        super().__init__()
        self.blocks = nn.Sequential(*blocks)
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)

    def cam_layer(self) -> nn.Module:
        return self.blocks[-1]


class Downsample(nn.Module):
    """(B, C, H, W) → (B, C, pixels, pixels) by area averaging."""

    def __init__(self, pixels: int):
        super().__init__()
        self.pixels = pixels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.adaptive_avg_pool2d(x, self.pixels)

    def extra_repr(self) -> str:
        return f"pixels={self.pixels}"


class PixelBackbone(Backbone):
    """Downsampled pixels, flattened, through optional hidden layers (MLP features)."""

    def __init__(self, pixels: int, hidden: Sequence[int] = (), dropout: float = 0.0):
        super().__init__()
        self.downsample = Downsample(pixels)
        layers: list[nn.Module] = [nn.Flatten(1)]
        width = pixels * pixels
        for units in hidden:
            layers += [nn.Linear(width, units), nn.ReLU(inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = units
        self.mlp = nn.Sequential(*layers)
        self.num_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.downsample(x))

    def cam_layer(self) -> nn.Module:
        return self.downsample  # the only spatial layer: Grad-CAM becomes a gradient-weighted pixel map


def xraychestnet_v1() -> tuple[Backbone, NativeHead]:
    """XrayChestNet v1: three conv blocks (5x5x10, 3x3x256, 3x3x512), FC 50, dropout 0.2."""
    relu = nn.ReLU
    backbone = ConvBackbone(
        [conv_block(1, 10, 5, relu(inplace=True)), conv_block(10, 256, 3, relu(inplace=True)),
         conv_block(256, 512, 3, relu(inplace=True))],
        512,
    )

    def head(num_outputs: int, dropout: float) -> nn.Module:
        return nn.Sequential(GlobalAvgPool(), nn.Dropout(dropout), nn.Linear(512, 50), nn.ReLU(inplace=True),
                             nn.Dropout(0.2), nn.Linear(50, num_outputs))

    return backbone, head


BASELINE_PIXELS = 32
ALRELU_KERNELS = (5, 3, 3, 3, 3)
ALRELU_CHANNELS = (32, 64, 128, 256, 512)
ALRELU_DROPOUTS = (0.1, 0.2, 0.3, 0.4, 0.5)


def alrelu_cnn() -> tuple[Backbone, NativeHead]:
    """Five conv blocks with ALReLU, GAP, FC 256 + layer-norm + dropout 0.4, FC out."""
    blocks, in_ch = [], 1
    for kernel, out_ch, p in zip(ALRELU_KERNELS, ALRELU_CHANNELS, ALRELU_DROPOUTS, strict=True):
        blocks.append(conv_block(in_ch, out_ch, kernel, ALReLU(), p))
        in_ch = out_ch
    backbone = ConvBackbone(blocks, in_ch)

    def head(num_outputs: int, dropout: float) -> nn.Module:
        return nn.Sequential(GlobalAvgPool(), nn.Dropout(dropout), nn.Linear(in_ch, 256), nn.LayerNorm(256),
                             ALReLU(), nn.Dropout(0.4), nn.Linear(256, num_outputs))

    return backbone, head


def logistic_regression(pixels: int = BASELINE_PIXELS) -> tuple[Backbone, None]:
    """Backbone of the logistic-regression baseline: the image averaged down to ``pixels`` x ``pixels``, flattened
    (fitted by ``models.baseline.fit_logistic_regression``)."""
    if pixels < 1:
        raise ValueError("pixels must be >= 1")
    return PixelBackbone(pixels), None


def simple_cnn(channels: Sequence[int] = (32, 64)) -> tuple[Backbone, None]:
    """Two conv blocks (3x3, batch-norm, ReLU, max-pool); the generic heads classify."""
    if len(channels) != 2 or min(channels) < 1:
        raise ValueError("simple_cnn needs two positive channel counts")
    blocks = [conv_block(1, channels[0], 3, nn.ReLU(inplace=True)),
              conv_block(channels[0], channels[1], 3, nn.ReLU(inplace=True))]
    return ConvBackbone(blocks, channels[1]), None


def feedforward(pixels: int = 32, hidden: Sequence[int] = (512, 128)) -> tuple[Backbone, None]:
    """Downsampled pixels → two hidden ReLU layers (the head adds the third, output layer)."""
    return PixelBackbone(pixels, tuple(hidden)), None


_BUILDERS: dict[str, Callable[..., tuple[Backbone, NativeHead | None]]] = {
    "xraychestnet_v1": xraychestnet_v1,
    "alrelu_cnn": alrelu_cnn,
    "simple_cnn": simple_cnn,
    "feedforward": feedforward,
    "logistic_regression": logistic_regression,
}


def build_custom(spec: ModelSpec, options: dict[str, Any]) -> tuple[Backbone, NativeHead | None]:
    """Backbone and native head factory (or None) of the custom network ``spec``."""
    return _BUILDERS[spec.name](**options)
