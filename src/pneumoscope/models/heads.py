"""Classification heads on top of a backbone's features.

- ``replace``: the backbone's own (ImageNet) classifier replaced by one Linear layer, after global average pooling
  and optional dropout.
- ``gap_fc``: global average pooling + FC(``hidden_units``) + ReLU + dropout + FC out.

Both accept a feature map (B, C, h, w) or a feature vector (B, C); the final layer is always an ``nn.Linear`` (the
inference package reads its input as the image's feature vector).
"""

from __future__ import annotations

import torch
from torch import nn


class GlobalAvgPool(nn.Module):
    """(B, C, h, w) → (B, C); (B, C) passes through."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)) if x.dim() == 4 else x.flatten(1)


class ReplaceHead(nn.Sequential):
    """GAP → dropout → Linear."""

    def __init__(self, num_features: int, num_outputs: int, dropout: float = 0.0):
        super().__init__()
        self.pool = GlobalAvgPool()
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(num_features, num_outputs)


class GapFcHead(nn.Sequential):
    """GAP → FC(hidden_units) → ReLU → dropout → Linear."""

    def __init__(self, num_features: int, num_outputs: int, hidden_units: int = 256, dropout: float = 0.0):
        super().__init__()
        self.pool = GlobalAvgPool()
        self.fc1 = nn.Linear(num_features, hidden_units)
        self.act = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden_units, num_outputs)


def build_head(kind: str, num_features: int, num_outputs: int, *, dropout: float = 0.0,
               hidden_units: int = 256) -> nn.Module:
    """The head ``kind`` ("replace" or "gap_fc") mapping ``num_features`` to ``num_outputs`` logits."""
    if kind == "replace":
        return ReplaceHead(num_features, num_outputs, dropout)
    if kind == "gap_fc":
        return GapFcHead(num_features, num_outputs, hidden_units, dropout)
    raise ValueError(f"unknown head {kind!r}")
