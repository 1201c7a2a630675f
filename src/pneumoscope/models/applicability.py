"""The applicability check shared by every model: is the image a frontal chest X-ray, and does it look like a
child's or an adult's?

One small network (``ApplicabilityNet``: EfficientNet-Lite0 with its ImageNet weights, on a 96-px grey thumbnail of
the image) answers both questions for any model; the scope verdict (``models.scope``) then compares the answer with
the population the model was trained on (``data.populations``):

- **Is this a chest X-ray at all?** The output of its early blocks, which keep their ImageNet weights (generic
  features, never trained on X-rays), average-pooled on a 2 x 2 grid (what is where: the layout of a frontal chest
  X-ray), is an embedding; a PCA + residual Mahalanobis distance (``FeatureReference``) to the embeddings of
  re-encoded chest X-rays of children and adults says how far the image is from any chest X-ray. It needs no
  examples of non-X-rays, so it also catches inputs nobody showed it: ``not_a_chest_xray``.
- **Child or adult?** Its later blocks are fine-tuned on children (Kermany) against adults (COVID-19 Radiography
  Database), every image **re-encoded** first (``data.reencode``: crop, resize, re-process, JPEG / PNG) so that
  neither archive's file format, size or processing carries any signal: ``p_adult``. A pediatric model flags
  ``p_adult >= adult_threshold`` as ``adult``; an adult model flags ``p_adult <= child_threshold`` as ``child``.

The fitted check is one ``applicability.safetensors`` (fp16 network weights, the reference, the thresholds, what it
was fitted on and the flag rates measured then; no pickle). The package ships one (``shipped_check_path``);
``$PNEUMOSCOPE_APPLICABILITY`` or a model folder's own file replaces it. ``inference.applicability_fit`` fits it
and ``inference.applicability_runtime`` runs it (onnxruntime).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pneumoscope.errors import ModelError

APPLICABILITY_FILE = "applicability.safetensors"
APPLICABILITY_ENV = "PNEUMOSCOPE_APPLICABILITY"
FORMAT_VERSION = 2
ARCHITECTURE = "efficientnet_lite0"
INPUT_SIZE = 96
FROZEN_BLOCKS = 5  # blocks[:5] keep their ImageNet weights; blocks[5:], the head conv and the logit are fitted
EMBEDDING_GRID = 2  # the frozen blocks' output (112 channels) pooled on a 2 x 2 grid: the 448-d X-ray embedding
_FIX = "re-create it with `pneumoscope scope fit MODEL --retrain`, or delete it to use the shipped check."


def shipped_check_path() -> Path:
    """The check shipped with the package (shared by the bundled models)."""
    return Path(__file__).resolve().parents[1] / "bundled" / APPLICABILITY_FILE


def applicability_input(thumbnail: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """The network's input: the 128-px area-averaged thumbnail of the image (``image_stats.downsample``, float in
    [0, 1]) shrunk to ``size`` px, float32."""
    return cv2.resize(np.asarray(thumbnail, dtype=np.float32), (size, size), interpolation=cv2.INTER_AREA)


# ------------------------------------------------------------------------------------------------ the network


def embedding_of(feature_map: Any) -> Any:
    """The X-ray embedding of the frozen blocks' output (B, C, h, w): average-pooled on an ``EMBEDDING_GRID`` grid,
    flattened (B, C * grid^2); a PyTorch tensor or a NumPy array (fitting computes it from cached maps)."""
    _, c, h, w = feature_map.shape
    g = EMBEDDING_GRID
    if isinstance(feature_map, np.ndarray):
        feature_map = feature_map.astype(np.float32)
    # a reshape, not adaptive pooling: the same arithmetic in NumPy and PyTorch, and exportable to ONNX
    cells = feature_map.reshape(-1, int(c), g, int(h) // g, g, int(w) // g).mean((3, 5))
    return cells.reshape(-1, int(c) * g * g)


def build_network(pretrained: bool = False) -> Any:
    """An ``ApplicabilityNet``, with EfficientNet-Lite0's ImageNet weights when ``pretrained`` (the packaged
    weights; offline)."""
    import torch
    from torch import nn

    from pneumoscope.models.registry import create_model

    class ApplicabilityNet(nn.Module):
        """(B, 1, S, S) grey in [0, 1] → (X-ray embedding (B, 448), adult logit (B,)); ``frozen_part`` and
        ``fitted_part`` split it where fitting caches the frozen blocks' output."""

        def __init__(self) -> None:
            super().__init__()
            classifier = create_model(ARCHITECTURE, num_classes=2, pretrained=pretrained, standardize=True)
            net = classifier.backbone.net
            self.adapter = classifier.adapter
            self.stem = nn.Sequential(net.conv_stem, net.bn1)
            self.blocks = net.blocks
            self.head = nn.Sequential(net.conv_head, net.bn2)
            self.dropout = nn.Dropout(0.3)
            self.logit = nn.Linear(int(net.num_features), 1)

        def frozen_part(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """(feature map after the frozen blocks, X-ray embedding)."""
            x = self.stem(self.adapter(x))
            for index in range(FROZEN_BLOCKS):
                x = self.blocks[index](x)
            return x, embedding_of(x)

        def fitted_part(self, x: torch.Tensor) -> torch.Tensor:
            """Adult logit (B,) from the frozen blocks' feature map."""
            for index in range(FROZEN_BLOCKS, len(self.blocks)):
                x = self.blocks[index](x)
            return self.logit(self.dropout(self.head(x).mean(dim=(2, 3))))[:, 0]

        def fitted_parameters(self) -> list[nn.Parameter]:
            modules = [*self.blocks[FROZEN_BLOCKS:], self.head, self.logit]
            return [p for module in modules for p in module.parameters()]

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            maps, embedding = self.frozen_part(x)
            return embedding, self.fitted_part(maps)

    return ApplicabilityNet().eval()


# ------------------------------------------------------------------------------------------------ the X-ray distance


@dataclass
class FeatureReference:
    """Embedding statistics of chest X-rays: PCA subspace + residual (a cheap Mahalanobis distance)."""

    mean: np.ndarray  # (D,)
    components: np.ndarray  # (K, D), orthonormal rows
    variances: np.ndarray  # (K,)
    residual_variance: float  # mean variance per dimension outside the subspace
    threshold: float  # distances at or above it are flagged

    def distance(self, features: np.ndarray) -> np.ndarray:
        """(N, D) embeddings → (N,) squared Mahalanobis-like distances, normalised by the dimension."""
        centred = np.asarray(features, dtype=np.float64) - self.mean
        projected = centred @ self.components.T
        inside = (projected**2 / self.variances).sum(axis=1)
        residual = (centred**2).sum(axis=1) - (projected**2).sum(axis=1)
        outside = np.maximum(residual, 0.0) / self.residual_variance
        return (inside + outside) / self.mean.shape[0]

    def score(self, features: np.ndarray) -> np.ndarray:
        """(N,) scores; >= 1 means further from chest X-rays than the threshold."""
        return self.distance(features) / self.threshold


def fit_feature_reference(features: np.ndarray, n_components: int = 32) -> FeatureReference:
    """PCA + residual variance of (N, D) chest X-ray embeddings; the threshold (1.0 here) is set by the caller on
    images the reference was not fitted on."""
    features = np.asarray(features, dtype=np.float64)
    n, dim = features.shape
    if n < 20:
        raise ModelError(f"need at least 20 images to fit the chest X-ray reference, got {n}.")
    mean = features.mean(axis=0)
    _, singular, vt = np.linalg.svd(features - mean, full_matrices=False)
    k = max(1, min(n_components, len(singular) - 1, dim - 1))
    variances = singular[:k] ** 2 / max(n - 1, 1)
    total = (singular**2).sum() / max(n - 1, 1)
    residual_variance = max((total - variances.sum()) / max(dim - k, 1), 1e-12)
    floor = max(variances.max() * 1e-6, 1e-12)
    return FeatureReference(mean, vt[:k], np.maximum(variances, floor), float(residual_variance), 1.0)


# ------------------------------------------------------------------------------------------------ the fitted check


@dataclass(frozen=True)
class CheckResult:
    """The check's answer for one image."""

    chest_xray_score: float  # >= 1: unlike any chest X-ray
    p_adult: float  # probability that the image shows an adult (meaningful for chest X-rays only)

    @property
    def chest_xray_ok(self) -> bool:
        return self.chest_xray_score < 1.0


@dataclass
class ApplicabilityCheck:
    """A fitted check: network weights, X-ray reference, population thresholds, and what it was fitted on."""

    weights: dict[str, np.ndarray]  # the ApplicabilityNet's state dict (float32 in memory)
    reference: FeatureReference
    adult_threshold: float  # p_adult >= it: an adult (for a model trained on children)
    child_threshold: float  # p_adult <= it: a child (for a model trained on adults)
    input_size: int = INPUT_SIZE
    seen_patients: frozenset[str] = frozenset()  # training-population patients fitted or calibrated on
    seen_files: frozenset[str] = frozenset()  # other-population files ("folder/name") fitted or calibrated on
    measured: dict[str, Any] = field(default_factory=dict)  # flag rates measured when it was fitted
    settings: dict[str, Any] = field(default_factory=dict)  # how it was fitted
    source: str = "applicability check"

    @property
    def sha256(self) -> str:
        """Hash of the network weights (names the cached ONNX export)."""
        digest = hashlib.sha256()
        for name in sorted(self.weights):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(self.weights[name], dtype=np.float16).tobytes())
        digest.update(str(self.input_size).encode())
        return digest.hexdigest()

    def results(self, embeddings: np.ndarray, adult_logits: np.ndarray) -> list[CheckResult]:
        """One result per row of the network's outputs."""
        scores = self.reference.score(embeddings)
        p_adult = 1.0 / (1.0 + np.exp(-np.asarray(adult_logits, dtype=np.float64)))
        return [CheckResult(float(s), float(p)) for s, p in zip(scores, p_adult, strict=True)]

    def network(self) -> Any:
        """The ``ApplicabilityNet`` with these weights (PyTorch, eval mode)."""
        import torch

        net = build_network(pretrained=False)
        state = {name: torch.from_numpy(np.asarray(value, dtype=np.float32)) for name, value in self.weights.items()}
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ModelError(f"the applicability network's weights do not fit (missing {missing[:3]}, unexpected "
                             f"{unexpected[:3]}).", path=self.source, fix=_FIX)
        return net.eval()

    # ------------------------------------------------------------------ storage
    def to_bytes(self) -> bytes:
        from safetensors.numpy import save

        tensors = {f"net.{name}": np.asarray(value, dtype=np.float16) for name, value in self.weights.items()}
        reference = self.reference
        tensors.update({"reference.mean": reference.mean.astype(np.float32),
                        "reference.components": reference.components.astype(np.float32),
                        "reference.variances": reference.variances.astype(np.float32)})
        meta = {
            "format_version": FORMAT_VERSION, "architecture": ARCHITECTURE, "input_size": self.input_size,
            "embedding_grid": EMBEDDING_GRID, "frozen_blocks": FROZEN_BLOCKS,
            "reference": {"residual_variance": reference.residual_variance, "threshold": reference.threshold},
            "adult_threshold": self.adult_threshold, "child_threshold": self.child_threshold,
            "seen_patients": sorted(self.seen_patients), "seen_files": sorted(self.seen_files),
            "measured": self.measured, "settings": self.settings,
        }
        return save(tensors, metadata={"applicability": json.dumps(meta, default=float)})

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "applicability check") -> ApplicabilityCheck:
        from safetensors.numpy import load

        try:
            tensors = load(data)
            header_length = int.from_bytes(data[:8], "little")
            meta = json.loads(json.loads(data[8 : 8 + header_length])["__metadata__"]["applicability"])
            version = int(meta["format_version"])
            if version != FORMAT_VERSION:
                raise ValueError(f"format version {version}; this pneumoscope reads version {FORMAT_VERSION}")
            layout = (meta.get("architecture"), meta.get("embedding_grid"), meta.get("frozen_blocks"))
            if layout != (ARCHITECTURE, EMBEDDING_GRID, FROZEN_BLOCKS):
                raise ValueError(f"another network layout {layout}")
            reference = FeatureReference(
                mean=tensors["reference.mean"].astype(np.float64),
                components=tensors["reference.components"].astype(np.float64),
                variances=tensors["reference.variances"].astype(np.float64),
                residual_variance=float(meta["reference"]["residual_variance"]),
                threshold=float(meta["reference"]["threshold"]))
            weights = {name[4:]: value.astype(np.float32) for name, value in tensors.items() if name.startswith("net.")}
            return cls(weights=weights, reference=reference, adult_threshold=float(meta["adult_threshold"]),
                       child_threshold=float(meta["child_threshold"]), input_size=int(meta["input_size"]),
                       seen_patients=frozenset(meta.get("seen_patients") or ()),
                       seen_files=frozenset(meta.get("seen_files") or ()),
                       measured=dict(meta.get("measured") or {}), settings=dict(meta.get("settings") or {}),
                       source=source)
        except Exception as error:  # noqa: BLE001 - any decoding failure is the same user error
            raise ModelError(f"unreadable applicability check ({type(error).__name__}: {error}).", path=source,
                             fix=_FIX) from None

    def save(self, path: str | Path) -> Path:
        """Write the check to ``path`` (a file, or a folder to hold ``applicability.safetensors``), atomically."""
        from pneumoscope.files import atomic_write_bytes

        path = Path(path)
        if path.is_dir():
            path = path / APPLICABILITY_FILE
        atomic_write_bytes(path, self.to_bytes())
        path.chmod(0o644)  # package data: readable by every user (atomic writes create private files)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ApplicabilityCheck:
        path = Path(path)
        if path.is_dir():
            path = path / APPLICABILITY_FILE
        if not path.is_file():
            raise ModelError("applicability check not found.", path=path,
                             fix=f"fit one with `pneumoscope scope fit MODEL --retrain`, or unset {APPLICABILITY_ENV}.")
        return cls.from_bytes(path.read_bytes(), str(path))


def check_path_for(model_folder: Path | None) -> Path | None:
    """Which check a model uses: ``$PNEUMOSCOPE_APPLICABILITY``, else the model folder's own file, else the shipped
    one; None where none exists (the verdict then has the header and image checks only)."""
    configured = os.environ.get(APPLICABILITY_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    if model_folder is not None and (model_folder / APPLICABILITY_FILE).is_file():
        return model_folder / APPLICABILITY_FILE
    shipped = shipped_check_path()
    return shipped if shipped.is_file() else None
