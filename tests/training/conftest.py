"""Fixtures of the training tests: tiny configs (simple_cnn, 32-64 px, 1-3 epochs)."""

from __future__ import annotations

import pytest


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
