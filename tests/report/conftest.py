"""Fixtures of the report tests (the synthetic inputs live in report_helpers; tiny runs in tiny_runs)."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_helpers import full_sections as build_full_sections
from tiny_runs import train_tiny


@pytest.fixture(scope="session")
def full_sections(make_xray) -> dict:
    """Every section of the report, built from synthetic predictions, images and a tiny CNN."""
    return build_full_sections(make_xray)



@pytest.fixture(scope="session")
def tiny_report_run(tmp_path_factory, tiny_kermany) -> Path:
    """A finished 1-epoch binary simple_cnn run on the tiny tree, for the report builder's tests."""
    return train_tiny(tmp_path_factory.mktemp("report_runs") / "tiny", tiny_kermany,
                      tmp_path_factory.getbasetemp() / "pneumoscope-cache")
