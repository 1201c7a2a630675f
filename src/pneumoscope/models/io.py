"""Saving and loading a trained ``Classifier``: ``model.safetensors`` + ``model.json``, written atomically, no pickle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from pneumoscope.errors import ModelError
from pneumoscope.files import atomic_write_bytes, atomic_write_text
from pneumoscope.models.classifier import Classifier
from pneumoscope.models.ensemble import ENSEMBLE_ARCHITECTURE, MeanProbabilityEnsemble, build_ensemble
from pneumoscope.models.meta import META_FILE, WEIGHTS_FILE, read_meta_file

META_KEYS = ("architecture", "model_kwargs", "task", "classes", "image_size", "preprocessing", "threshold",
             "threshold_method", "temperature", "val_metrics", "pneumoscope_version")


def save_classifier(model: Classifier | MeanProbabilityEnsemble, meta: dict[str, Any], out_dir: str | Path, *,
                    half: bool = False) -> Path:
    """Write ``out_dir/model.safetensors`` and ``out_dir/model.json`` (each atomically); returns ``out_dir``.

    ``architecture`` and ``model_kwargs`` are taken from the model itself (they must rebuild it); ``half=True``
    stores floating-point tensors as float16 (loading returns float32).
    """
    from safetensors.torch import save

    from pneumoscope.version import __version__

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(model, MeanProbabilityEnsemble):
        meta = {**meta, **model.description(meta.get("members") or [{} for _ in model.members])}
    else:
        meta = {**meta, "architecture": model.spec.name, "model_kwargs": dict(model.model_kwargs)}
        meta.setdefault("normalisation", {"name": model.spec.normalisation, "mean": list(model.spec.mean),
                                          "std": list(model.spec.std), "standardize": model.adapter.standardize})
    meta.setdefault("pneumoscope_version", __version__)
    text = json.dumps(meta, indent=2, sort_keys=False, default=_json_default) + "\n"
    tensors = {k: _storable(v, half) for k, v in model.state_dict().items()}
    # serialised in memory: safetensors' save_file creates its own private (0600) file in place of the one given
    stored = save(tensors, metadata={"format": "pt", "architecture": meta["architecture"]})
    atomic_write_bytes(out / WEIGHTS_FILE, stored)
    atomic_write_text(out / META_FILE, text)
    return out


def load_classifier(path: str | Path) -> tuple[Classifier | MeanProbabilityEnsemble, dict[str, Any]]:
    """Read a classifier (or an ensemble of them) from a run folder or its ``model.safetensors`` (``model.json``
    beside it); float32, eval."""
    from pneumoscope.models.registry import create_model

    weights, meta_path = _files(Path(path))
    meta = read_meta(meta_path)
    if meta["architecture"] == ENSEMBLE_ARCHITECTURE:
        model = build_ensemble(meta, meta_path)
    else:
        try:
            model = create_model(meta["architecture"], **meta["model_kwargs"])
        except ModelError as error:
            raise ModelError(f"model.json does not describe a buildable model ({error.message})", path=meta_path,
                             fix="re-create it with `pneumoscope train`.") from None
    state = _read_weights(weights)
    _check_state(model, state, weights)
    model.load_state_dict(state, strict=True)
    return model.float().eval(), meta


def read_meta(meta_path: Path) -> dict[str, Any]:
    """The parsed ``model.json`` (must name ``architecture`` and ``model_kwargs``)."""
    meta = read_meta_file(meta_path)
    if not isinstance(meta.get("architecture"), str) or not isinstance(meta.get("model_kwargs"), dict):
        raise ModelError("model.json lacks 'architecture' / 'model_kwargs'.", path=meta_path,
                         fix="re-create it with `pneumoscope train`.")
    return meta


def _files(path: Path) -> tuple[Path, Path]:
    if path.is_dir():
        weights, meta = path / WEIGHTS_FILE, path / META_FILE
    elif path.suffix == ".safetensors":
        weights, meta = path, path.with_name(META_FILE)
    else:
        raise ModelError("not a model folder or .safetensors file.", path=path,
                         fix="pass the run folder written by `pneumoscope train` or its model.safetensors.")
    for needed in (weights, meta):
        if not needed.is_file():
            raise ModelError(f"no {needed.name} here.", path=needed.parent,
                             fix="pass the run folder written by `pneumoscope train` (model.safetensors + model.json).")
    return weights, meta


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        state = load_file(str(path), device="cpu")
    except Exception as error:  # noqa: BLE001 - truncated or foreign file
        raise ModelError(f"cannot read the weights ({type(error).__name__}: {error}).", path=path,
                         fix="re-create the model with `pneumoscope train`.") from None
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def _check_state(model: Classifier, state: dict[str, torch.Tensor], path: Path) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or shapes:
        detail = "; ".join(f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                           for label, keys in (("missing", missing), ("unexpected", unexpected),
                                               ("wrong shape", shapes)) if keys)
        raise ModelError(f"the weights do not match model.json ({detail}).", path=path,
                         fix="keep model.safetensors and model.json of the same run together.")


def _storable(tensor: torch.Tensor, half: bool) -> torch.Tensor:
    tensor = tensor.detach().to("cpu")
    if half and tensor.is_floating_point():
        tensor = tensor.to(torch.float16)
    return tensor.contiguous().clone()  # clone: safetensors refuses tensors that share memory


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()  # numpy / torch scalars
    if isinstance(value, Path | tuple | set):
        return str(value) if isinstance(value, Path) else list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
