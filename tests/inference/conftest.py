"""Fixtures for the inference tests: tiny random-init models saved as run folders, real image paths."""

from __future__ import annotations

from pathlib import Path

import pytest
from inference_helpers import save_run, small_architecture


@pytest.fixture(scope="session")
def binary_run(tmp_path_factory) -> Path:
    """A tiny binary run folder (random weights, 64 px, threshold 0.3, temperature 1.5)."""
    return save_run(tmp_path_factory.mktemp("binary_run"), small_architecture())


@pytest.fixture(scope="session")
def fullres_paths(real_data: Path) -> list[Path]:
    """The 60 full-resolution Kermany images (NORMAL and PNEUMONIA)."""
    paths = sorted((real_data / "chest_xray_fullres_sample").rglob("*.jpeg"))
    assert len(paths) == 60
    return paths
