"""Logistic-regression baseline on downsampled pixels.

Fitted with scikit-learn, then its coefficients are copied into the model's ``nn.Linear`` head, so that evaluation,
ONNX export and ``predict`` treat it like any other ``Classifier``: the pixel features come from the model's own
input adapter and downsampling, so training and inference see the same numbers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from pneumoscope.errors import DataError, ModelError

if TYPE_CHECKING:
    from pneumoscope.models.classifier import Classifier


@torch.no_grad()
def pixel_features(model: Classifier, images_uint8: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """(N, pixels²) features of uint8 images (N, H, W) through the model's adapter and backbone."""
    model = model.eval()
    chunks = []
    for start in range(0, len(images_uint8), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(images_uint8[start:start + batch_size])).float().div_(255.0)
        chunks.append(model.features(batch.unsqueeze(1)).flatten(1).cpu().numpy())
    return np.concatenate(chunks).astype(np.float64)


def fit_logistic_regression(
    model: Classifier, images_uint8: np.ndarray, labels: np.ndarray, *, C: float = 1.0, max_iter: int = 2000,
    class_weight: str | dict | None = None,
) -> dict[str, Any]:
    """Fit ``model`` (a ``logistic_regression`` classifier) on uint8 images (N, H, W) and class indices.

    Features are standardised for the solver; the scaling is folded back into the Linear layer. Returns
    ``{"train_accuracy", "n_iter", "classes"}``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    head = _linear_head(model)
    labels = np.asarray(labels).astype(np.int64).ravel()
    images_uint8 = np.asarray(images_uint8)
    if images_uint8.ndim != 3 or len(images_uint8) != len(labels):
        raise DataError(f"need uint8 images (N, H, W) and N labels, got {images_uint8.shape} and {labels.shape}.")
    present = np.unique(labels)
    if not np.array_equal(present, np.arange(model.num_classes)):
        raise DataError(f"logistic regression needs training labels of every one of the {model.num_classes} "
                        f"classes (0..{model.num_classes - 1}); got {present.tolist()}.",
                        fix="check the task's labels and the training split.")
    features = pixel_features(model, images_uint8)
    scaler = StandardScaler().fit(features)
    clf = LogisticRegression(C=C, max_iter=max_iter, class_weight=class_weight)
    clf.fit(scaler.transform(features), labels)
    weight, bias = _folded(clf, scaler)
    _copy_into(head, weight, bias, model)
    return {"train_accuracy": float(clf.score(scaler.transform(features), labels)),
            "n_iter": int(np.max(clf.n_iter_)), "classes": clf.classes_.tolist()}


def _linear_head(model: Classifier) -> nn.Linear:
    if model.spec.name != "logistic_regression":
        raise ModelError(f"fit_logistic_regression needs the logistic_regression model, got {model.spec.name}.")
    linears = [m for m in model.head.modules() if isinstance(m, nn.Linear)]
    if len(linears) != 1:
        raise ModelError("fit_logistic_regression needs head='replace' (one Linear layer).")
    return linears[0]


def _folded(clf: Any, scaler: Any) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients on raw features: w' = w / σ, b' = b − Σ w μ / σ."""
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    weight = clf.coef_ / scale
    bias = clf.intercept_ - (clf.coef_ * scaler.mean_ / scale).sum(axis=1)
    return weight, bias


def _copy_into(head: nn.Linear, weight: np.ndarray, bias: np.ndarray, model: Classifier) -> None:
    """Write sklearn's coefficients into the Linear head (one logit, or one per class)."""
    w, b = torch.from_numpy(weight), torch.from_numpy(bias)
    if w.shape[0] == 1 and not model.sigmoid_binary:
        # sklearn's binary model is one logit z for class 1; softmax over [-z/2, z/2] gives the same sigmoid(z)
        w, b = torch.cat([-w / 2, w / 2]), torch.cat([-b / 2, b / 2])
    with torch.no_grad():
        head.weight.copy_(w.to(head.weight.dtype))
        head.bias.copy_(b.to(head.bias.dtype))
