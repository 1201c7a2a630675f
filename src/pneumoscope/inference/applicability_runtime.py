"""Running the applicability check (``models.applicability``) on model inputs: onnxruntime on an export kept in
pneumoscope's cache (made on first use, parity-checked), PyTorch where that fails.

``load_runner(path)`` keeps one runner per file and process (the network is loaded and exported once); runners are
thread-safe (onnxruntime sessions are; the PyTorch path runs under ``torch.inference_mode``).
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Any

import numpy as np

from pneumoscope.errors import ModelError
from pneumoscope.inference.backends import onnx_session
from pneumoscope.inference.onnx_io import cache_path, cached_export, write_onnx
from pneumoscope.models.applicability import (
    EMBEDDING_GRID,
    FORMAT_VERSION,
    FROZEN_BLOCKS,
    ApplicabilityCheck,
    CheckResult,
)

PARITY_TOLERANCE = 1e-3  # on the logit and the embedding, relative to their scale
INPUT_NAME = "thumbnail"
OUTPUTS = ("embedding", "adult_logit")


class ApplicabilityRunner:
    """A fitted check ready to judge batches of ``applicability_input`` thumbnails."""

    def __init__(self, check: ApplicabilityCheck, backend: str = "auto"):
        self.check = check
        self.input_size = check.input_size
        self._torch_net: Any = None
        self._session: Any = None
        self._lock = threading.Lock()
        if backend not in ("auto", "onnx", "pytorch"):
            raise ModelError(f"unknown backend {backend!r}.", fix="use auto, onnx or pytorch.")
        if backend != "pytorch":
            path = cached_export(cache_path(export_name(check)), self._export, required=backend == "onnx")
            if path is not None:
                self._session = onnx_session(path)

    @property
    def backend(self) -> str:
        return "onnx" if self._session is not None else "pytorch"

    def outputs(self, thumbnails: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(embeddings (B, D), adult logits (B,)) of (B, S, S) float32 thumbnails."""
        batch = np.ascontiguousarray(np.asarray(thumbnails, dtype=np.float32)[:, None])
        if batch.shape[-2:] != (self.input_size, self.input_size):
            raise ModelError(f"the applicability check takes {self.input_size}-px thumbnails, got {batch.shape[-2:]}.",
                             path=self.check.source, fix="build them with models.applicability.applicability_input.")
        if self._session is not None:
            embedding, logit = self._session.run(list(OUTPUTS), {INPUT_NAME: batch})
            return embedding, logit
        import torch

        with torch.inference_mode():
            embedding, logit = self._network()(torch.from_numpy(batch))
        return embedding.numpy(), logit.numpy()

    def judge(self, thumbnails: np.ndarray) -> list[CheckResult]:
        """The check's result for each thumbnail."""
        if len(thumbnails) == 0:
            return []
        return self.check.results(*self.outputs(thumbnails))

    def _network(self) -> Any:
        with self._lock:
            if self._torch_net is None:
                self._torch_net = self.check.network()
            return self._torch_net

    def _export(self, out: Path) -> None:
        import torch

        net = self._network()
        size = self.input_size
        write_onnx(net, torch.rand(2, 1, size, size), out, INPUT_NAME, OUTPUTS,
                   {"pneumoscope_applicability": self.check.sha256, "input_size": str(size)},
                   "Pneumoscope applicability check (chest X-ray embedding, adult logit)")
        probe = np.random.default_rng(0).uniform(0, 1, (4, 1, size, size)).astype(np.float32)
        with torch.inference_mode():
            want = [t.numpy() for t in net(torch.from_numpy(probe))]
        got = onnx_session(out).run(list(OUTPUTS), {INPUT_NAME: probe})
        for expected, actual in zip(want, got, strict=True):
            scale = max(1.0, float(np.abs(expected).max()))
            if float(np.abs(expected - actual).max()) > PARITY_TOLERANCE * scale:
                raise ModelError("the ONNX export of the applicability check differs from PyTorch.", path=out,
                                 fix="report this as a bug; prediction uses PyTorch meanwhile.")


def export_name(check: ApplicabilityCheck) -> str:
    """The name of the check's ONNX export in the cache: its weights' hash and the network layout (the same weights
    give another graph when the embedding's blocks or grid change)."""
    return f"applicability-v{FORMAT_VERSION}-b{FROZEN_BLOCKS}g{EMBEDDING_GRID}-{check.sha256[:16]}"


@functools.lru_cache(maxsize=4)
def _cached_runner(path: str, mtime_ns: int, size: int) -> ApplicabilityRunner:
    return ApplicabilityRunner(ApplicabilityCheck.load(path))


def load_runner(path: str | Path) -> ApplicabilityRunner:
    """The runner of the check in ``path``, shared by every model of this process that uses it."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        return ApplicabilityRunner(ApplicabilityCheck.load(path))  # raises the one-line "not found" error
    return _cached_runner(str(path.resolve()), stat.st_mtime_ns, stat.st_size)
