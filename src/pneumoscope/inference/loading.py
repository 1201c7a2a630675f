"""``load_predictor(ref)``: any model reference ready to predict, on the fastest backend that gives the same answers.

On the CPU a model folder predicts through onnxruntime when an ONNX file exported from its very weights (same
SHA-256) is at hand: ``model.onnx`` beside the weights, or, for bundled models (which ship none, to keep the package
small), the export that pneumoscope's cache keeps, made on first use with the parity check of ``export``. Then
neither torch nor the network's code is imported to predict; the PyTorch model is built only if an explanation asks
for it. Where no such export exists or it fails, prediction stays on PyTorch.
"""

from __future__ import annotations

import functools
from pathlib import Path

from pneumoscope.errors import ModelError
from pneumoscope.inference.applicability_runtime import ApplicabilityRunner, load_runner
from pneumoscope.inference.backends import EXPORTED_ONNX_FILE
from pneumoscope.inference.export import export_predictor
from pneumoscope.inference.model_files import (
    ModelRef,
    folder_identity,
    folder_meta,
    open_folder,
    open_onnx,
    resolve,
    torch_backend,
)
from pneumoscope.inference.onnx_io import cache_path, cached_export
from pneumoscope.inference.predictor import Predictor
from pneumoscope.models.applicability import check_path_for

BACKENDS = ("auto", "pytorch", "onnx")


def load_predictor(ref: str | Path, device: str = "cpu", task: str | None = None, backend: str = "auto",
                   applicability: str | Path | ApplicabilityRunner | None = "auto") -> Predictor:
    """Load a run folder, a ``model.safetensors``, an ``.onnx`` file or a bundled model name.

    ``task``, when given, must match the model's task (ModelError otherwise). ``backend`` for model folders:
    ``auto`` predicts through onnxruntime on the CPU when an export of these very weights is at hand (see the module
    docstring), else PyTorch; ``pytorch`` / ``onnx`` force one. Explanations always run on the PyTorch model.
    ``applicability``: ``auto`` uses ``check_path_for`` the model (``$PNEUMOSCOPE_APPLICABILITY``, the model
    folder's own check, else the shipped one); a path or a runner uses that check; None none (the scope verdict then
    has the header and image checks only).
    """
    if backend not in BACKENDS:
        raise ModelError(f"unknown backend {backend!r}.", fix="use auto, pytorch or onnx.")
    model = resolve(ref)
    if model.kind == "onnx":
        predictor = open_onnx(model.path, device)
    else:
        predictor = None
        if backend == "onnx" or (backend == "auto" and device == "cpu"):
            predictor = _exported(model, device, required=backend == "onnx")
        if predictor is None:
            predictor = open_folder(model, device)
    if task is not None and predictor.task is not None and predictor.task != task:
        raise ModelError(f"this model was trained for task {predictor.task!r}, not {task!r}.", path=predictor.source,
                         fix=f"use a model trained for {task!r}, or drop --task.")
    predictor.applicability = applicability_runner(applicability, predictor.source)
    return predictor


def applicability_runner(choice: str | Path | ApplicabilityRunner | None, source: Path) -> ApplicabilityRunner | None:
    """The runner ``load_predictor``'s ``applicability`` argument asks for (see there)."""
    if choice is None or isinstance(choice, ApplicabilityRunner):
        return choice
    if str(choice) == "auto":
        path = check_path_for(source if source.is_dir() else None)
        return None if path is None else load_runner(path)
    return load_runner(Path(choice))


def _exported(model: ModelRef, device: str, required: bool) -> Predictor | None:
    """The folder's model on onnxruntime, from an export of its weights: ``model.onnx`` beside them, or the cache's
    (made there on first use for a bundled model). None where there is none (ModelError if ``required``)."""
    meta, digest = folder_meta(model)
    identity = folder_identity(model, meta, digest)
    sibling = model.path / EXPORTED_ONNX_FILE
    cached = cache_path(f"{model.name or model.path.name or 'model'}-{digest[:16]}")
    torch_loaded = None
    candidate = sibling if sibling.is_file() else cached if cached.is_file() else None
    if candidate is None and model.name is not None:
        torch_loaded = open_folder(model, device)
        candidate = cached_export(cached, functools.partial(export_predictor, torch_loaded), required)
    if candidate is None:
        if required:
            raise ModelError(f"no {EXPORTED_ONNX_FILE} beside the model.", path=model.path,
                             fix="create it with `pneumoscope export MODEL --format onnx`, or use --backend auto.")
        return torch_loaded
    exported = open_onnx(candidate, device)
    if exported.weights_sha256 != digest or exported.classes != meta.classes:
        if required:
            raise ModelError(f"{candidate.name} was exported from other weights.", path=candidate,
                             fix="re-export it with `pneumoscope export`.")
        return torch_loaded
    if torch_loaded is not None:
        loaded = torch_loaded.torch_backend
        torch_loader = lambda: loaded
    else:
        torch_loader = functools.partial(torch_backend, model, device)
    return Predictor(exported.runner, meta, **identity, torch_loader=torch_loader)
