"""The two ways a ``Predictor`` runs its network: PyTorch (``TorchBackend``: any device, explanations) and
onnxruntime (``OnnxBackend``: faster on the CPU, no torch import). Both return (logits, penultimate features)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from pneumoscope.device import keep_freed_memory
from pneumoscope.errors import ModelError
from pneumoscope.models.scoring import pool_features

ONNX_META_KEY = "pneumoscope"
EXPORTED_ONNX_FILE = "model.onnx"
# the largest block malloc keeps for reuse while predicting: a batch's activations at 128 px (device.keep_freed_memory)
PREDICT_BLOCK_BYTES = 128 * 1024 * 1024


class TorchBackend:
    """A pneumoscope ``Classifier`` in PyTorch; penultimate features are read from the input of its last Linear."""

    name = "pytorch"

    def __init__(self, model: Any, device: str):
        import torch

        keep_freed_memory(PREDICT_BLOCK_BYTES)
        self.torch = torch
        self.device = torch.device(device)
        # channels_last roughly doubles CPU convolution throughput for the registry's CNNs (same results to ~1e-6).
        self.model = model.eval().to(self.device).to(memory_format=torch.channels_last)
        self.head = last_linear(self.model)

    def run(self, batch: np.ndarray, want_features: bool) -> tuple[np.ndarray, np.ndarray | None]:
        with self.torch.inference_mode():
            x = self.torch.from_numpy(batch).to(self.device)
            if not want_features:
                return self.model(x).float().cpu().numpy(), None
            logits, features = forward_with_features(self.model, x, self.head)
        return logits.float().cpu().numpy(), None if features is None else features.float().cpu().numpy()


def forward_with_features(model: Any, x: Any, head: Any = None) -> tuple[Any, Any]:
    """(logits, penultimate features (B, D)) in one pass.

    A pneumoscope ``Classifier`` computes ``head(features(x))``; its feature map is average-pooled. An ensemble
    (``models.ensemble``) gives its members' side by side. Other modules:
    the input of their last Linear layer, recorded by a hook that ignores passes of other threads.
    """
    own = getattr(model, "logits_and_features", None)
    if own is not None:
        return own(x)
    if hasattr(model, "features") and hasattr(model, "head"):
        features = model.features(x)
        return model.head(features), pool_features(features)
    if head is None:
        return model(x), None
    captured: list[Any] = []
    caller = threading.get_ident()

    def capture(_module: Any, args: tuple) -> None:
        if threading.get_ident() == caller:  # other threads may be running the same model right now
            captured.append(args[0])

    handle = head.register_forward_pre_hook(capture)
    try:
        logits = model(x)
    finally:
        handle.remove()
    return logits, captured[0].flatten(1) if captured else None


def last_linear(model: Any) -> Any:
    """The last ``torch.nn.Linear`` of ``model`` (its input is the penultimate feature vector), or None."""
    import torch

    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    return linears[-1] if linears else None


class OnnxBackend:
    """An exported ``.onnx`` file run by onnxruntime (outputs ``logits`` and, if exported, ``features``)."""

    name = "onnx"

    def __init__(self, session: Any):
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.output_names = [o.name for o in session.get_outputs()]

    @classmethod
    def open(cls, path: Path, device: str) -> OnnxBackend:
        """An onnxruntime session of ``path`` (``onnx_session``), ModelError if unreadable."""
        try:
            return cls(onnx_session(path, device))
        except Exception as error:  # noqa: BLE001 - onnxruntime raises several types for bad files
            raise ModelError(f"not a readable ONNX model ({type(error).__name__}).", path=path,
                             fix="re-export it with `pneumoscope export RUN_DIR --format onnx`.") from None

    @property
    def metadata(self) -> dict[str, str]:
        """The file's ``metadata_props``."""
        return dict(self.session.get_modelmeta().custom_metadata_map)

    def run(self, batch: np.ndarray, want_features: bool) -> tuple[np.ndarray, np.ndarray | None]:
        names = self.output_names if want_features else self.output_names[:1]
        outputs = self.session.run(names, {self.input_name: batch})
        features = outputs[1] if len(outputs) > 1 else None
        return outputs[0].astype(np.float32), features


def onnx_session(path: Path, device: str = "cpu") -> Any:
    """An onnxruntime session of ``path`` as pneumoscope runs them (CUDA when asked for and available).

    Predictions overlap with the decode threads, so the intra-op threads do not spin while they wait for work (they
    would take the cores the decoders need); no memory arena, which would keep every session's largest batch
    allocated for the life of the process (peak memory of ``pneumoscope predict`` 630 -> 413 MB); malloc keeps the
    freed activations for the next run instead (``keep_freed_memory``).
    """
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_cpu_mem_arena = False
    keep_freed_memory(PREDICT_BLOCK_BYTES)
    return ort.InferenceSession(str(path), sess_options=options, providers=providers)
