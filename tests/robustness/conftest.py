"""Fixtures of the robustness tests: a tiny 3-class run on the synthetic Kermany tree."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_runs import train_tiny


@pytest.fixture(scope="session")
def tiny_three_class_run(tmp_path_factory, tiny_kermany) -> Path:
    """A finished 1-epoch 3-class simple_cnn run (normal / bacteria / virus) on the tiny tree."""
    return train_tiny(tmp_path_factory.mktemp("robustness_runs") / "three", tiny_kermany,
                      tmp_path_factory.getbasetemp() / "pneumoscope-cache", task="3class")
