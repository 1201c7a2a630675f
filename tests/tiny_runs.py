"""Tiny training runs for tests of what comes after training (evaluation, robustness, report): simple_cnn, 32 px,
one epoch on a synthetic Kermany tree (a module, not conftest, so any test folder can import it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pneumoscope.paths import CACHE_ENV

TINY: dict[str, Any] = {
    "task": "binary",
    "preset": "plain",
    "data": {"image_size": 32, "val_fraction": 0.3, "num_workers": 0},
    "model": {"name": "simple_cnn", "pretrained": False},
    "trainer": {"epochs": 1, "batch_size": 8, "device": "cpu", "deterministic": True},
}


def tiny_config(data_root: Path, /, **sections: Any):
    """A resolved config training simple_cnn for one epoch at 32 px on ``data_root`` (``sections`` override it,
    ``data=...`` included)."""
    from pneumoscope.training.config import deep_merge, resolve_config

    values = deep_merge(TINY, {"data": {"paths": [str(data_root)]}})
    return resolve_config(overrides=deep_merge(values, sections))


def train_tiny(out: Path, data_root: Path, cache: Path, /, **sections: Any) -> Path:
    """Train the tiny config on ``data_root`` into ``out``, with the image cache under ``cache``; returns the run
    folder."""
    from pneumoscope.training.run import train

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(cache))
        return train(tiny_config(data_root, **sections), out, progress=False)
