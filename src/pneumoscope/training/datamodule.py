"""The Lightning data module over the decoded-image cache: uint8 ``(1, S, S)`` tensors and class indices.

Only the manifest's ``train`` and ``val`` rows ever reach this module: ``trainable_rows`` drops every other row
(``test``, ``excluded``, unreadable) when the module is built, before the cache is read, so no code path here can
load a test image. Images stay uint8 until they are on the training device (4x less to copy); the training module
converts and augments them there.
"""

from __future__ import annotations

import os
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler

from pneumoscope.errors import DataError
from pneumoscope.tasks import label_column, task_classes
from pneumoscope.training.config import TrainConfig

TRAINABLE_SPLITS = ("train", "val")


def trainable_rows(manifest: pd.DataFrame, task: str) -> pd.DataFrame:
    """The ``train``/``val`` rows of ``manifest`` that are readable and belong to ``task`` (nothing else)."""
    column = label_column(task)
    keep = manifest["split"].isin(TRAINABLE_SPLITS) & manifest[column].fillna("").astype(str).ne("")
    if "status" in manifest.columns:
        keep &= manifest["status"].fillna("ok").eq("ok")
    return manifest.loc[keep].reset_index(drop=True)


def class_indices(frame: pd.DataFrame, task: str) -> np.ndarray:
    """Class index of each row in ``task`` (order of ``tasks.task_classes``)."""
    classes = task_classes(task)
    lookup = {name: i for i, name in enumerate(classes)}
    names = frame[label_column(task)].astype(str)
    unknown = sorted(set(names) - set(lookup))
    if unknown:
        raise DataError(f"labels {unknown} are not classes of task {task!r} ({', '.join(classes)}).",
                        fix="rebuild the manifest for this task.")
    return names.map(lookup).to_numpy(dtype=np.int64)


def resolve_num_workers(value: int | str, on_gpu: bool) -> int:
    """``"auto"``: no worker processes on CPU (the cores train), up to 8 when a GPU trains."""
    if value != "auto":
        return int(value)
    if not on_gpu:
        return 0
    return max(1, min(8, (os.cpu_count() or 2) // 2))


class CachedImageDataset(Dataset):
    """Rows ``index`` of a uint8 image array ``(N, S, S)`` with their labels: items ``(uint8 (1, S, S), label)``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, index: np.ndarray | None = None):
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.index = np.arange(len(self.labels)) if index is None else np.asarray(index, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.index.size)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, int]:
        row = self.index[item]
        return torch.from_numpy(np.array(self.images[row], dtype=np.uint8))[None], int(self.labels[row])

    @property
    def item_labels(self) -> np.ndarray:
        """Labels in item order."""
        return self.labels[self.index]


class EpochShuffleSampler(Sampler[int]):
    """A random permutation per epoch derived from ``seed + epoch``: a resumed run sees the same order."""

    def __init__(self, size: int, seed: int):
        self.size = size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())


class EpochWeightedSampler(EpochShuffleSampler):
    """Draws ``size`` items with replacement, item ``i`` with probability proportional to ``weights[i]``."""

    def __init__(self, weights: torch.Tensor, seed: int):
        super().__init__(len(weights), seed)
        self.weights = torch.as_tensor(weights, dtype=torch.double)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.multinomial(self.weights, self.size, replacement=True, generator=generator).tolist())


class PneumoDataModule(L.LightningDataModule):
    """Train/val loaders from the manifest's split column and the decoded-image cache."""

    def __init__(self, manifest: pd.DataFrame, config: TrainConfig, pin_memory: bool = False,
                 num_workers: int = 0, copy_augment: torch.nn.Module | None = None):
        super().__init__()
        self.config = config
        self.task = config.task
        self.num_classes = len(task_classes(config.task))
        self.frame = trainable_rows(manifest, config.task)
        self.labels = class_indices(self.frame, config.task)
        self.train_index = np.flatnonzero(self.frame["split"].to_numpy() == "train")
        self.val_index = np.flatnonzero(self.frame["split"].to_numpy() == "val")
        self.pin_memory = pin_memory
        self.num_workers = num_workers
        self.copy_augment = copy_augment
        self.images: np.ndarray | None = None
        self.copies: tuple[np.ndarray, np.ndarray] | None = None
        self.train_set: Dataset | None = None
        self.val_set: CachedImageDataset | None = None

    # ---------------------------------------------------------------- cache
    def _cache(self) -> np.ndarray:
        from pneumoscope.data.cache import build_cache

        data = self.config.data
        return build_cache(self.frame["path"].tolist(), self.frame["sha256"].tolist(), data.image_size,
                           clahe=data.clahe)

    def prepare_data(self) -> None:
        self._cache()

    def setup(self, stage: str | None = None) -> None:
        if self.images is not None:
            return
        self.images = self._cache()
        base = CachedImageDataset(self.images, self.labels, self.train_index)
        self.val_set = CachedImageDataset(self.images, self.labels, self.val_index)
        balance = self.config.balance
        if balance.method == "oversample":
            from pneumoscope.training.balance import oversample_minority

            if self.copy_augment is None:
                raise ValueError("oversampling needs copy_augment")
            copies, copy_labels = oversample_minority(
                np.asarray(self.images[self.train_index]), self.labels[self.train_index], self.num_classes,
                self.copy_augment, balance.target_count, seed=self.config.seed)
            self.copies = (copies, copy_labels)
            self.train_set = ConcatDataset([base, CachedImageDataset(copies, copy_labels)])
        else:
            self.train_set = base

    # ---------------------------------------------------------------- labels
    @property
    def train_labels(self) -> np.ndarray:
        """Labels of the training items, in dataset order (copies included)."""
        labels = self.labels[self.train_index]
        if self.copies is not None:
            labels = np.concatenate([labels, self.copies[1]])
        return labels

    @property
    def val_labels(self) -> np.ndarray:
        return self.labels[self.val_index]

    def val_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Validation images ``(N, S, S)`` uint8 and labels."""
        self.setup()
        return np.asarray(self.images[self.val_index]), self.val_labels

    def train_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Training images ``(N, S, S)`` uint8 (copies included) and labels."""
        self.setup()
        images = np.asarray(self.images[self.train_index])
        if self.copies is not None:
            images = np.concatenate([images, self.copies[0]])
        return images, self.train_labels

    # ---------------------------------------------------------------- loaders
    def _loader(self, dataset: Dataset, sampler: Sampler | None, drop_last: bool) -> DataLoader:
        extra: dict[str, Any] = {}
        if self.num_workers > 0:
            extra.update(persistent_workers=True, prefetch_factor=4)
        return DataLoader(dataset, batch_size=self.config.trainer.batch_size, sampler=sampler,
                          num_workers=self.num_workers, pin_memory=self.pin_memory, drop_last=drop_last, **extra)

    def train_dataloader(self) -> DataLoader:
        self.setup()
        size = len(self.train_set)
        if self.config.balance.method == "weighted_sampler":
            from pneumoscope.training.balance import sample_weights

            sampler: Sampler = EpochWeightedSampler(sample_weights(self.train_labels, self.num_classes),
                                                    self.config.seed)
        else:
            sampler = EpochShuffleSampler(size, self.config.seed)
        # a last batch of one image breaks batch-norm; dropping a partial batch loses nothing (order changes)
        return self._loader(self.train_set, sampler, drop_last=size > self.config.trainer.batch_size)

    def val_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.val_set, None, drop_last=False)
