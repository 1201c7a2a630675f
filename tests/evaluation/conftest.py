"""Fixtures of the evaluation tests: one tiny trained binary run (simple_cnn, 32 px)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_runs import train_tiny


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_kermany) -> Path:
    """A finished 1-epoch binary simple_cnn run on the tiny synthetic Kermany tree (shared, read-only)."""
    return train_tiny(tmp_path_factory.mktemp("eval_runs") / "tiny", tiny_kermany,
                      tmp_path_factory.getbasetemp() / "pneumoscope-cache")
