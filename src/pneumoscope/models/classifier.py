"""``Classifier``: input adapter + backbone + head, with the freezing helpers the training strategies use."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from pneumoscope.errors import ModelError
from pneumoscope.models.adapter import InputAdapter
from pneumoscope.models.backbones import Backbone
from pneumoscope.models.heads import build_head
from pneumoscope.models.spec import ModelSpec


class Classifier(nn.Module):
    """Images (B, 1, H, W) float in [0, 1] → logits (B, num_outputs).

    ``num_outputs`` is ``num_classes``, or 1 for a sigmoid binary model (``sigmoid_binary``); ``probabilities``
    turns either into (B, num_classes) class probabilities.
    """

    def __init__(self, spec: ModelSpec, adapter: InputAdapter, backbone: Backbone, head: nn.Module, *,
                 num_classes: int, sigmoid_binary: bool, model_kwargs: dict[str, Any]):
        super().__init__()
        self.spec = spec
        self.adapter = adapter
        self.backbone = backbone
        self.head = head
        self.num_classes = num_classes
        self.sigmoid_binary = sigmoid_binary
        self.model_kwargs = dict(model_kwargs)  # what create_model needs to rebuild this architecture
        self.weights_file: str | None = None  # where the pretrained backbone weights came from, if any

    @property
    def num_outputs(self) -> int:
        return 1 if self.sigmoid_binary else self.num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(self.adapter(x)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's output for ``x`` (feature map or vector)."""
        return self.backbone(self.adapter(x))

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, num_classes) class probabilities: sigmoid for a one-logit binary model, softmax otherwise."""
        if logits.shape[-1] == 1:
            positive = torch.sigmoid(logits[..., 0])
            return torch.stack([1.0 - positive, positive], dim=-1)
        return torch.softmax(logits, dim=-1)

    def cam_target_layer(self) -> nn.Module:
        """The layer Grad-CAM weighs: the backbone's last convolutional block."""
        return self.backbone.cam_layer()

    # -- freezing ----------------------------------------------------------------------------------------------

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.head.parameters())

    def backbone_parameters(self) -> list[nn.Parameter]:
        return list(self.backbone.parameters())

    def freeze_backbone(self) -> None:
        """Backbone frozen, head trainable."""
        _set_trainable(self.backbone.parameters(), False)
        _set_trainable(self.head.parameters(), True)

    def unfreeze_all(self) -> None:
        _set_trainable(self.parameters(), True)

    def unfreeze_last(self, n: int) -> None:
        """Only the last ``n`` parameterised layers of the backbone (and the whole head) trainable.

        A layer is a module that owns parameters itself (a conv, a batch-norm, a linear...), in registration order,
        which follows the forward order for every registry architecture.
        """
        if n < 0:
            raise ModelError(f"unfreeze_last needs n >= 0, got {n}.")
        self.freeze_backbone()
        layers = self.backbone_layers()
        for layer in layers[max(len(layers) - n, 0):] if n > 0 else []:
            _set_trainable(layer.parameters(recurse=False), True)

    def backbone_layers(self) -> list[nn.Module]:
        """The backbone's modules that own parameters, in order."""
        return [m for m in self.backbone.modules() if any(True for _ in m.parameters(recurse=False))]


def _set_trainable(params: Iterator[nn.Parameter] | list[nn.Parameter], trainable: bool) -> None:
    for p in params:
        p.requires_grad_(trainable)


def build_classifier(
    spec: ModelSpec, num_classes: int, *, pretrained: bool, weights: str | None, head: str, dropout: float,
    hidden_units: int, standardize: bool, sigmoid_binary: bool, options: dict[str, Any],
) -> Classifier:
    """Assemble the Classifier of ``spec`` (arguments checked by ``registry.create_model``)."""
    from pneumoscope.models import pretrained as weights_module

    one_logit = sigmoid_binary or num_classes == 1
    num_outputs = 1 if one_logit else num_classes
    backbone, native_head = _build_backbone(spec, options)
    weights_file = None
    if weights is not None or pretrained:
        weights_file = weights_module.load_pretrained_backbone(backbone, spec, weights)
    if head == "replace" and native_head is not None:
        head_module = native_head(num_outputs, dropout)
    else:
        head_module = build_head(head, backbone.num_features, num_outputs, dropout=dropout, hidden_units=hidden_units)
    adapter = InputAdapter(spec.in_channels, spec.mean, spec.std, standardize)
    model_kwargs = {"num_classes": num_classes, "head": head, "dropout": dropout, "hidden_units": hidden_units,
                    "standardize": standardize, "sigmoid_binary": one_logit, **options}
    model = Classifier(spec, adapter, backbone, head_module, num_classes=2 if one_logit else num_classes,
                       sigmoid_binary=one_logit, model_kwargs=model_kwargs)
    model.weights_file = str(weights_file) if weights_file else None
    return model


def _build_backbone(spec: ModelSpec, options: dict[str, Any]):
    if spec.family in ("custom", "baseline"):
        from pneumoscope.models.custom import build_custom

        try:
            return build_custom(spec, options)
        except (TypeError, ValueError) as error:
            raise ModelError(f"{spec.name}: invalid options {options} ({error}).") from None
    from pneumoscope.models.backbones import build_backbone

    return build_backbone(spec, options), None
