"""ONNX export: the whole ``Classifier`` (grey input adapter included) with a dynamic batch axis, the model's metadata
in the file's ``metadata_props``, a check with ``onnx.checker`` and a parity check against PyTorch.

Outputs: ``logits`` (B, C) and, where the model has a final Linear layer, ``features`` (B, D) — its input (the
penultimate features, for the shortcut audit and users' own analyses). Temperature, threshold and softmax are applied
by ``Predictor`` from the metadata (which also carries the model's training population, for the scope verdict),
exactly as for the PyTorch model, so both paths share one post-processing code.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pneumoscope.errors import ConfigError, ModelError
from pneumoscope.inference.backends import ONNX_META_KEY, forward_with_features, last_linear
from pneumoscope.inference.model_files import open_folder, open_onnx, resolve
from pneumoscope.inference.onnx_io import DEFAULT_OPSET, write_onnx
from pneumoscope.inference.predictor import Predictor

FORMATS = ("onnx",)
PARITY_TOLERANCE = 1e-4


@dataclass(frozen=True)
class ExportResult:
    """Where the file went and how closely onnxruntime matches PyTorch on the parity inputs."""

    path: Path
    max_abs_prob_diff: float
    outputs: tuple[str, ...]
    size_bytes: int


def _with_features(model: Any, head: Any) -> Any:
    import torch

    class WithFeatures(torch.nn.Module):
        """Returns (logits, penultimate features), as ``Predictor`` computes them."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return forward_with_features(self.model, image, head)

    return WithFeatures()


def onnx_metadata(predictor: Predictor) -> dict[str, str]:
    """The ``metadata_props`` written into the ONNX file (the Predictor reads the ``pneumoscope`` JSON)."""
    meta = dict(predictor.info.raw)
    meta.update(
        classes=list(predictor.classes),
        image_size=predictor.image_size,
        task=predictor.task,
        threshold=predictor.threshold,
        temperature=predictor.temperature,
        preprocessing=meta.get("preprocessing", {"clahe": predictor.info.clahe}),
        exported_from=predictor.model_id,
        weights_sha256=predictor.weights_sha256,
        model_card=predictor.card.get("model_card"),
    )
    props = {
        ONNX_META_KEY: json.dumps(meta, default=str),
        "classes": json.dumps(list(predictor.classes)),
        "image_size": str(predictor.image_size),
        "threshold": json.dumps(predictor.threshold),
        "temperature": str(predictor.temperature),
        "preprocessing": json.dumps(meta["preprocessing"]),
        "input": "image: float32 (batch, 1, image_size, image_size), grey values in [0, 1] after preprocess()",
    }
    return props


def export_onnx(ref: str | Path, out: Path, opset: int = DEFAULT_OPSET, parity_images: list[np.ndarray] | None = None
                ) -> ExportResult:
    """Export the PyTorch model ``ref`` (run folder, model.safetensors or bundled name) to ``out``.

    Raises ModelError if the export fails, does not pass ``onnx.checker``, or differs from PyTorch by more than
    ``PARITY_TOLERANCE`` in any probability on ``parity_images`` (default: a few synthetic images).
    """
    model = resolve(ref)
    if model.kind != "folder":
        raise ConfigError("export needs PyTorch weights; this is already an ONNX file.", path=model.path,
                          fix="pass the run folder, model.safetensors or bundled model name.")
    return export_predictor(open_folder(model, "cpu"), out, opset, parity_images)


def export_predictor(predictor: Predictor, out: Path, opset: int = DEFAULT_OPSET,
                     parity_images: list[np.ndarray] | None = None) -> ExportResult:
    """Export a PyTorch ``predictor`` to ``out`` (see ``export_onnx``)."""
    import torch

    # A private copy: the exporter restores the train/eval mode of the module it was given, and a fresh wrapper
    # module starts in train mode, which would leave the predictor's BatchNorm layers in training mode.
    model = copy.deepcopy(predictor.torch_backend.model).cpu().eval().to(memory_format=torch.contiguous_format)
    head = last_linear(model)
    has_features = hasattr(model, "features") or head is not None
    module = (_with_features(model, head) if has_features else model).eval()
    outputs = ("logits", "features") if has_features else ("logits",)
    size = predictor.image_size
    out = Path(out)
    try:
        write_onnx(module, torch.rand(2, 1, size, size), out, "image", outputs, onnx_metadata(predictor),
                   f"Pneumoscope {predictor.task or ''} classifier {predictor.model_id}", opset)
    except Exception as error:  # noqa: BLE001 - exporter failures are many types; report them as one line
        raise ModelError(f"ONNX export failed ({type(error).__name__}: {error}).", path=predictor.source,
                         fix=f"check that the architecture supports ONNX export (opset {opset}).") from None
    difference = parity(predictor, open_onnx(out, "cpu"), parity_images or _parity_images(size))
    if difference > PARITY_TOLERANCE:
        out.unlink(missing_ok=True)
        raise ModelError(f"the ONNX model differs from PyTorch by {difference:.2e} in probability.",
                         path=out, fix="report this as a bug with the architecture name.")
    return ExportResult(out, difference, outputs, out.stat().st_size)


def parity(reference: Predictor, candidate: Predictor, images: list[np.ndarray]) -> float:
    """Max abs difference in any class probability between two predictors on ``images``."""
    a = reference.predict_arrays(images)
    b = candidate.predict_arrays(images)
    return max(
        abs(x["probabilities"][c] - y["probabilities"][c]) for x, y in zip(a, b, strict=True) for c in x["probabilities"]
    )


def _parity_images(size: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = 0.7 - 0.4 * np.exp(-(((xx - 0.3) / 0.15) ** 2 + ((yy - 0.5) / 0.3) ** 2))
    return [np.clip(base + rng.normal(0, 0.05, base.shape), 0, 1).astype(np.float32) for _ in range(4)]
