"""Fixtures of the data-layer tests: the real manifest (scanned once per session)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def real_manifest(real_data):
    """The scanned manifest of the real Kermany + COVID-19 Radiography data (built once per test session)."""
    from pneumoscope.data.manifest import build_manifest

    return build_manifest([real_data / "chest_xray", real_data / "covid19_radiography"], progress=False)
