"""Fixtures of the training tests: an isolated image cache and tiny configs (simple_cnn, 32-64 px, 1-3 epochs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pneumoscope.paths import CACHE_ENV


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch) -> Path:
    """Image caches go to a per-session temporary folder, never to the user's cache."""
    root = tmp_path_factory.getbasetemp() / "pneumoscope-cache"
    monkeypatch.setenv(CACHE_ENV, str(root))
    return root


@pytest.fixture
def tiny_config(tiny_kermany):
    """``tiny_config(**sections)``: a resolved config that trains simple_cnn on the tiny synthetic Kermany tree."""
    from pneumoscope.training.config import deep_merge, resolve_config

    def make(preset: str = "recommended", **sections):
        base = {
            "task": "binary",
            "data": {"paths": [str(tiny_kermany)], "image_size": 32, "val_fraction": 0.3, "num_workers": 0},
            "model": {"name": "simple_cnn", "pretrained": False},
            "trainer": {"epochs": 2, "batch_size": 8, "device": "cpu", "deterministic": True},
            "evaluation": {"temperature": True},
        }
        return resolve_config(overrides=deep_merge(base, sections), preset=preset)

    return make
