"""Fixtures of the data-layer tests: an isolated cache and the real manifest (scanned once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pneumoscope.paths import CACHE_ENV


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch) -> Path:
    """Caches go to a per-session temporary folder, never to the user's cache."""
    root = tmp_path_factory.getbasetemp() / "pneumoscope-data-cache"
    monkeypatch.setenv(CACHE_ENV, str(root))
    return root


@pytest.fixture(scope="session")
def real_manifest(real_data):
    """The scanned manifest of the real Kermany + COVID-19 Radiography data (built once per test session)."""
    from pneumoscope.data.manifest import build_manifest

    return build_manifest([real_data / "chest_xray", real_data / "covid19_radiography"], progress=False)
