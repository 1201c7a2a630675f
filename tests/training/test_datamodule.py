"""The data module reads only train/val rows from the cache and yields uint8 (1, S, S) tensors."""

from __future__ import annotations

import numpy as np
import torch

from pneumoscope.training.datamodule import PneumoDataModule, trainable_rows
from pneumoscope.training.run import build_run_manifest


def test_only_train_and_val_rows_are_loaded(tiny_config, tmp_path):
    config = tiny_config()
    manifest = build_run_manifest(config, tmp_path, resuming=False)
    assert (manifest["split"] == "test").any()
    data = PneumoDataModule(manifest, config)
    assert set(data.frame["split"]) == {"train", "val"}
    assert not set(data.frame["path"]) & set(manifest.loc[manifest["split"] == "test", "path"])
    data.setup()
    assert len(data.images) == len(data.frame)
    assert len(data.train_set) + len(data.val_set) == len(trainable_rows(manifest, "binary"))


def test_batches_are_uint8_images_with_labels(tiny_config, tmp_path):
    config = tiny_config(trainer={"batch_size": 4})
    data = PneumoDataModule(build_run_manifest(config, tmp_path, resuming=False), config)
    data.setup()
    images, labels = next(iter(data.train_dataloader()))
    assert images.dtype == torch.uint8 and images.shape == (4, 1, 32, 32)
    assert labels.dtype == torch.int64 and set(labels.tolist()) <= {0, 1}
    val_images, _ = next(iter(data.val_dataloader()))
    assert val_images.shape[1:] == (1, 32, 32)
    seen = np.concatenate([b[1].numpy() for b in data.val_dataloader()])
    assert np.array_equal(seen, data.val_labels)
