"""The documentation site builds with ``mkdocs build --strict``: every page in the nav, no broken link or anchor, the
README's quick start and the API reference generated from the docstrings."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path: Path) -> None:
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-4000:]
    home = text_of(site / "index.html")
    assert "bash scripts/setup && bash scripts/quickstart" in home  # the README's quick start, included
    assert 'model = ps.load_model("kermany-binary")' in home
    reference = (site / "reference" / "api" / "index.html").read_text(encoding="utf-8")
    for name in ("load_model", "Model.predict", "read_dataset", "split_dataset", "train", "evaluate", "compare",
                 "export_onnx"):
        assert f'id="pneumoscope.api.{name}"' in reference, name
    shown = text_of(site / "reference" / "api" / "index.html")
    assert 'ps.load_model("kermany-binary", backend="pytorch").prediction_columns()' in shown  # the examples
    for page in ("ARCHITECTURE", "GENERALISATION", "PERFORMANCE", "RESULTS", "RELIABILITY", "SCOPE"):
        assert (site / page / "index.html").is_file(), page
    assert (site / "tutorial.ipynb").is_file()


def text_of(page: Path) -> str:
    """The text of an HTML page (tags removed, entities decoded)."""
    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8")))
