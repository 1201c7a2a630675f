"""Class balancing: class-weighted loss, weighted sampling, or augmented copies of the smaller classes.

``oversample_minority`` is the research's "offline augmentation of the minority class": each smaller class gets
augmented copies of its own images until it reaches a target count. The copies are made once, deterministically from
the seed, and then take part in training like the originals (online augmentation included).
"""

from __future__ import annotations

import numpy as np
import torch

from pneumoscope.errors import DataError


def class_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Number of images per class index."""
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)[:num_classes]


def class_weights(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """Loss weights ``n / (k * count_c)`` (scikit-learn's "balanced"): each class contributes equally to the loss."""
    from sklearn.utils.class_weight import compute_class_weight

    counts = class_counts(labels, num_classes)
    if (counts == 0).any():
        raise DataError(f"no training images of class index {np.flatnonzero(counts == 0).tolist()} to weight.",
                        fix="check the task's classes against the data.")
    weights = compute_class_weight("balanced", classes=np.arange(num_classes), y=np.asarray(labels))
    return torch.tensor(weights, dtype=torch.float32)


def sample_weights(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """Per-image sampling weight ``1 / count(class)``: classes are drawn equally often."""
    counts = class_counts(labels, num_classes).astype(np.float64)
    per_class = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
    return torch.as_tensor(per_class[np.asarray(labels, dtype=np.int64)], dtype=torch.double)


def weighted_sampler(labels: np.ndarray, num_classes: int, seed: int) -> torch.utils.data.WeightedRandomSampler:
    """A sampler that draws ``len(labels)`` images per epoch with replacement, classes equally likely."""
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.WeightedRandomSampler(sample_weights(labels, num_classes), num_samples=len(labels),
                                                  replacement=True, generator=generator)


def oversample_plan(labels: np.ndarray, num_classes: int, target_count: int | None, seed: int) -> np.ndarray:
    """Indices of the images to copy so that every class has at least ``target_count`` images.

    ``target_count`` defaults to the largest class's count. Copies cycle through a class's images in a random
    order, so every image is copied about as often as the others.
    """
    counts = class_counts(labels, num_classes)
    target = int(counts.max()) if target_count is None else int(target_count)
    rng = np.random.default_rng(seed)
    plan: list[np.ndarray] = []
    for cls in range(num_classes):
        missing = target - int(counts[cls])
        members = np.flatnonzero(np.asarray(labels) == cls)
        if missing <= 0 or members.size == 0:
            continue
        order = np.concatenate([rng.permutation(members) for _ in range(-(-missing // members.size))])
        plan.append(order[:missing])
    return np.concatenate(plan) if plan else np.empty(0, dtype=np.int64)


def oversample_minority(
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    augment: torch.nn.Module,
    target_count: int | None = None,
    seed: int = 0,
    batch_size: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Augmented copies ``(uint8 (M, S, S), labels (M,))`` that bring every class up to ``target_count``.

    ``augment`` maps a float batch ``(B, 1, S, S)`` in [0, 1] to the same shape (``training.augment.BatchAugment``).
    """
    from pneumoscope.training.augment import augment_seeded

    plan = oversample_plan(labels, num_classes, target_count, seed)
    copies = np.empty((plan.size, *images.shape[1:]), dtype=np.uint8)
    for start in range(0, plan.size, batch_size):
        index = plan[start:start + batch_size]
        batch = torch.from_numpy(np.asarray(images[index])).float() / 255.0
        out = augment_seeded(augment, batch[:, None], seed + 1 + start)
        copies[start:start + index.size] = (out[:, 0] * 255.0).round().clamp(0, 255).to(torch.uint8).numpy()
    return copies, np.asarray(labels)[plan].astype(np.int64)
