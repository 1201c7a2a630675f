"""Model files opened as ``Predictor``s: a model folder (run folder or bundled model: ``model.safetensors`` +
``model.json``) in PyTorch, an exported ``.onnx`` file in onnxruntime, and which of the two a reference names."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pneumoscope.data.populations import Population, recorded_population
from pneumoscope.errors import ModelError, PneumoscopeError
from pneumoscope.files import file_sha256
from pneumoscope.inference import bundled
from pneumoscope.inference.backends import ONNX_META_KEY, OnnxBackend, TorchBackend
from pneumoscope.inference.predictor import Predictor, model_stem
from pneumoscope.models.meta import META_FILE, WEIGHTS_FILE, ModelMeta, read_meta_file

CARD_FILE = bundled.CARD_FILE
RUN_MANIFEST = "manifest.csv"


@dataclass(frozen=True)
class ModelRef:
    """What a model reference names: an ONNX file, or a model folder (its weights file; its bundled name)."""

    kind: str  # "folder" or "onnx"
    path: Path
    weights: Path | None = None
    name: str | None = None


def resolve(ref: str | Path) -> ModelRef:
    """A run folder, a ``model.safetensors`` / ``model.json``, an ``.onnx`` file or a bundled name (ModelError
    listing the installed names for an unknown one)."""
    path = Path(str(ref)).expanduser()
    if path.exists():
        if path.is_dir():
            return ModelRef("folder", path, path / WEIGHTS_FILE)
        if path.suffix.lower() == ".onnx":
            return ModelRef("onnx", path)
        if path.suffix.lower() == ".safetensors" or path.name == META_FILE:
            return ModelRef("folder", path.parent, path if path.suffix.lower() == ".safetensors"
                            else path.parent / WEIGHTS_FILE)
        raise ModelError("not a model file.", path=path,
                         fix="pass a run folder, a model.safetensors, an .onnx file or a bundled model name.")
    model = bundled.find_bundled(str(ref))
    if model is None:
        bundled.get_bundled(str(ref))  # raises, listing what is installed
        raise AssertionError("unreachable")
    return ModelRef("folder", model.path, model.path / WEIGHTS_FILE, model.name)


def folder_meta(ref: ModelRef) -> tuple[ModelMeta, str]:
    """The validated ``model.json`` of a model folder and the SHA-256 of its weights (no torch needed)."""
    folder, weights = ref.path, ref.weights or ref.path / WEIGHTS_FILE
    meta_path = folder / META_FILE
    if not weights.is_file() or not meta_path.is_file():
        raise ModelError(f"no trained model here (expected {WEIGHTS_FILE} and {META_FILE}).", path=folder,
                         fix="pass the folder written by `pneumoscope train`, an .onnx file or a bundled model name.")
    return ModelMeta.from_dict(read_meta_file(meta_path), meta_path), file_sha256(weights)


def folder_identity(ref: ModelRef, meta: ModelMeta, digest: str) -> dict:
    """The ``Predictor`` keywords that identify a model folder, whichever backend runs it."""
    card = ref.path / CARD_FILE
    return {"model_id": f"{ref.name or model_stem(meta)}-{digest[:12]}", "weights_sha256": digest,
            "source": ref.path, "population": recorded_population(meta, ref.path / RUN_MANIFEST),
            "card_text": card.read_text(encoding="utf-8") if card.is_file() else None, "name": ref.name}


def torch_backend(ref: ModelRef, device: str) -> TorchBackend:
    """The folder's classifier in PyTorch (ModelError naming the folder if its files are corrupt or foreign)."""
    from pneumoscope.models import load_classifier

    weights = ref.weights or ref.path / WEIGHTS_FILE
    try:
        model, _ = load_classifier(ref.path if weights.parent == ref.path and weights.name == WEIGHTS_FILE
                                   else weights)
    except PneumoscopeError:
        raise
    except Exception as error:  # noqa: BLE001 - corrupt or foreign files
        raise ModelError(f"cannot load the model ({type(error).__name__}: {error}).", path=ref.path,
                         fix="re-create it with `pneumoscope train`.") from None
    return TorchBackend(model, device)


def open_folder(ref: ModelRef, device: str) -> Predictor:
    """A model folder in PyTorch."""
    meta, digest = folder_meta(ref)
    return Predictor(torch_backend(ref, device), meta, **folder_identity(ref, meta, digest))


def open_onnx(path: Path, device: str) -> Predictor:
    """An exported ``.onnx`` file (it carries the metadata) in onnxruntime."""
    backend = OnnxBackend.open(path, device)
    custom = backend.metadata
    if ONNX_META_KEY not in custom:
        raise ModelError("this ONNX file has no pneumoscope metadata (classes, preprocessing, threshold).", path=path,
                         fix="export the model with `pneumoscope export RUN_DIR --format onnx`.")
    try:
        raw = json.loads(custom[ONNX_META_KEY])
    except json.JSONDecodeError:
        raise ModelError("the ONNX file's pneumoscope metadata is not valid JSON.", path=path,
                         fix="re-export it with `pneumoscope export`.") from None
    meta = ModelMeta.from_dict(raw, path)
    return Predictor(backend, meta, model_id=f"{model_stem(meta)}-onnx-{file_sha256(path)[:12]}",
                     weights_sha256=raw.get("weights_sha256"), source=path,
                     population=Population.from_dict(raw.get("population")), card_text=raw.get("model_card"))
