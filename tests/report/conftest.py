"""Fixtures of the report tests (the synthetic inputs live in report_helpers)."""

from __future__ import annotations

import pytest
from report_helpers import full_sections as build_full_sections


@pytest.fixture(scope="session")
def full_sections(make_xray) -> dict:
    """Every section of the report, built from synthetic predictions, images and a tiny CNN."""
    return build_full_sections(make_xray)
