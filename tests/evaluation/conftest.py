"""Fixtures of the evaluation tests: an isolated image cache and one tiny trained binary run (simple_cnn, 32 px)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_runs import train_tiny

from pneumoscope.paths import CACHE_ENV


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch) -> Path:
    """Image caches go to a per-session temporary folder, never to the user's cache."""
    root = tmp_path_factory.getbasetemp() / "pneumoscope-cache"
    monkeypatch.setenv(CACHE_ENV, str(root))
    return root


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_kermany) -> Path:
    """A finished 1-epoch binary simple_cnn run on the tiny synthetic Kermany tree (shared, read-only)."""
    return train_tiny(tmp_path_factory.mktemp("eval_runs") / "tiny", tiny_kermany,
                      tmp_path_factory.getbasetemp() / "pneumoscope-cache")
