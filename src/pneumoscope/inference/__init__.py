"""Inference: ``load_predictor`` (run folder, ``.onnx`` file or bundled model) → ``Predictor``, TTA, the scope verdict
with the applicability check (running and fitting it), Grad-CAM explanations and ONNX export.

Names are imported lazily so that ``import pneumoscope.inference`` stays cheap (the CLI imports it at start-up).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "LoadedImage",
    "Predictor",
    "default_model_name",
    "export_onnx",
    "iter_image_files",
    "list_bundled",
    "load_input",
    "load_input_bytes",
    "load_predictor",
]

_LOCATIONS = {
    "Predictor": "pneumoscope.inference.predictor",
    "load_predictor": "pneumoscope.inference.loading",
    "LoadedImage": "pneumoscope.inference.sources",
    "load_input": "pneumoscope.inference.sources",
    "load_input_bytes": "pneumoscope.inference.sources",
    "iter_image_files": "pneumoscope.inference.sources",
    "export_onnx": "pneumoscope.inference.export",
    "list_bundled": "pneumoscope.inference.bundled",
    "default_model_name": "pneumoscope.inference.bundled",
}


def __getattr__(name: str) -> Any:
    if name in _LOCATIONS:
        import importlib

        return getattr(importlib.import_module(_LOCATIONS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
