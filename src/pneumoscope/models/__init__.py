"""The model registry, custom networks, pretrained weights, the input adapter, and saving/loading classifiers.

``list_models`` / ``get_spec`` need no torch; the other names import torch (and timm / torchvision) on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pneumoscope.models.registry import create_model, get_spec, list_models
from pneumoscope.models.spec import HEADS, ModelSpec

if TYPE_CHECKING:
    from pneumoscope.models.adapter import InputAdapter
    from pneumoscope.models.baseline import fit_logistic_regression
    from pneumoscope.models.classifier import Classifier
    from pneumoscope.models.io import load_classifier, save_classifier

__all__ = [
    "HEADS",
    "Classifier",
    "InputAdapter",
    "ModelSpec",
    "create_model",
    "fit_logistic_regression",
    "get_spec",
    "list_models",
    "load_classifier",
    "save_classifier",
]

_LAZY = {
    "Classifier": "pneumoscope.models.classifier",
    "InputAdapter": "pneumoscope.models.adapter",
    "fit_logistic_regression": "pneumoscope.models.baseline",
    "load_classifier": "pneumoscope.models.io",
    "save_classifier": "pneumoscope.models.io",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pneumoscope.models' has no attribute {name!r}")
