"""The one scoring path of a trained classifier: batched forward passes (logits, optionally the pooled penultimate
features) and probabilities from logits. Training's final step, evaluation, prediction, the report and the server all
score through these two functions, so that a model gives the same numbers everywhere."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pneumoscope.device import TRAINING_BLOCK_BYTES, keep_freed_memory
from pneumoscope.progress import progress_bar


def probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Class probabilities ``(N, K)`` of logits scaled by ``1 / temperature``: softmax over K >= 2 logits, or a
    sigmoid for a one-logit binary model (then K = 2: ``[1 - p, p]``). float64, rows summing to 1."""
    scaled = np.asarray(logits, dtype=np.float64) / float(temperature)
    if scaled.ndim != 2 or scaled.shape[1] == 0:
        raise ValueError(f"logits must be (N, K) with K >= 1, got shape {scaled.shape}")
    if scaled.shape[1] == 1:
        positive = 1.0 / (1.0 + np.exp(-scaled[:, 0]))
        return np.stack([1.0 - positive, positive], axis=1)
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def as_model_input(images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Preprocessed images ``(N, S, S)`` (uint8, or float in [0, 1]) → the float32 ``(N, 1, S, S)`` a model takes."""
    array = np.asarray(images)
    scaled = array.astype(np.float32) / 255.0 if array.dtype == np.uint8 else array.astype(np.float32, copy=False)
    return np.ascontiguousarray(scaled[:, None])


def forward(model: Any, images: np.ndarray | Sequence[np.ndarray], *, batch_size: int = 64, device: str = "cpu",
            features: bool = False, progress: bool = False,
            description: str = "scoring") -> tuple[np.ndarray, np.ndarray | None]:
    """Logits ``(N, outputs)`` of preprocessed images ``(N, S, S)`` (eval mode, no augmentation), and their pooled
    penultimate features ``(N, D)`` when ``features`` (a ``Classifier``'s backbone output, average-pooled)."""
    import torch

    keep_freed_memory(TRAINING_BLOCK_BYTES)
    model = model.to(device).eval()
    own_features = getattr(model, "logits_and_features", None)  # an ensemble: its members' features side by side
    logits, pooled = [], []
    count = len(images)
    with progress_bar(progress, transient=True) as bar, torch.inference_mode():
        task = bar.add_task(description, total=count)
        for start in range(0, count, batch_size):
            x = torch.from_numpy(as_model_input(images[start:start + batch_size])).to(device)
            if features and own_features is not None:
                out, member_features = own_features(x)
                pooled.append(member_features.float().cpu())
            elif features:
                feature_map = model.features(x)
                out = model.head(feature_map)
                pooled.append(pool_features(feature_map).float().cpu())
            else:
                out = model(x)
            logits.append(out.float().cpu())
            bar.advance(task, x.shape[0])
    if not logits:
        return np.empty((0, getattr(model, "num_outputs", 0)), dtype=np.float32), None
    return torch.cat(logits).numpy(), torch.cat(pooled).numpy() if features else None


def pool_features(feature_map: Any) -> Any:
    """A backbone output → ``(B, D)``: average-pooled when it is a feature map, flattened otherwise."""
    return feature_map.mean(dim=(2, 3)) if feature_map.ndim == 4 else feature_map.flatten(1)
