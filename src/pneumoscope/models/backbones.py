"""Backbones: a network without its classifier, returning a feature map (B, C, h, w) or vector (B, C).

Every backbone exposes ``num_features`` (C), ``cam_layer()`` (the module whose output Grad-CAM weighs) and, for
networks with published weights, ``net`` (the timm / torchvision module whose state-dict keys a weights file uses) and
``head_key_prefixes`` (keys of that file that belong to the ImageNet classifier and are dropped).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pneumoscope.models.spec import ModelSpec


class Backbone(nn.Module):
    """Base class: ``forward`` returns the features that the head pools and classifies."""

    num_features: int
    head_key_prefixes: tuple[str, ...] = ()

    def cam_layer(self) -> nn.Module:
        """The last convolutional block (its output is the backbone's final feature map)."""
        return self

    def weights_target(self) -> nn.Module:
        """The module whose state-dict keys a pretrained weights file uses."""
        return getattr(self, "net", self)


class TimmBackbone(Backbone):
    """A timm model without classifier (``num_classes=0``); ``forward`` is its ``forward_features``."""

    def __init__(self, timm_name: str, **options: Any):
        super().__init__()
        import timm

        self.net = timm.create_model(timm_name, pretrained=False, num_classes=0, **options)
        # VGG's FC-4096 layers (timm "pre_logits") are part of its ImageNet classifier: the head replaces them.
        if hasattr(self.net, "pre_logits") and not isinstance(self.net.pre_logits, nn.Identity):
            self.net.pre_logits = nn.Identity()
        self.num_features = int(self.net.num_features)
        classifier = self.net.pretrained_cfg.get("classifier") or ()
        names = (classifier,) if isinstance(classifier, str) else tuple(classifier)
        # AuxLogits: torchvision Inception v3 files carry an auxiliary classifier that timm's model does not have.
        self.head_key_prefixes = tuple(f"{n}." for n in names) + ("pre_logits.", "head.", "AuxLogits.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(x)


class GoogLeNetBackbone(Backbone):
    """torchvision's GoogLeNet up to its last inception block (no auxiliary classifiers, no input transform)."""

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import googlenet

        # transform_input=False: the adapter already gives the [-1, 1] input its ImageNet weights expect.
        self.net = googlenet(weights=None, aux_logits=False, transform_input=False, init_weights=True)
        self.net.fc = nn.Identity()
        self.num_features = 1024
        self.head_key_prefixes = ("fc.", "aux1.", "aux2.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = n.maxpool1(n.conv1(x))
        x = n.maxpool2(n.conv3(n.conv2(x)))
        x = n.maxpool3(n.inception3b(n.inception3a(x)))
        x = n.inception4e(n.inception4d(n.inception4c(n.inception4b(n.inception4a(x)))))
        return n.inception5b(n.inception5a(n.maxpool4(x)))


def build_backbone(spec: ModelSpec, options: dict[str, Any]) -> Backbone:
    """The backbone of a timm / torchvision / EfficientNet-Lite spec (custom networks: ``models.custom``)."""
    if spec.family in ("timm", "efficientnet_lite"):
        return TimmBackbone(spec.source, **options)
    if spec.family == "torchvision" and spec.source == "googlenet":
        return GoogLeNetBackbone()
    raise ValueError(f"no backbone builder for {spec.name} (family {spec.family})")
