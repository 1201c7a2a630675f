"""Where Pneumoscope finds real data and keeps caches, overridable by environment variables."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "PNEUMOSCOPE_DATA"
CACHE_ENV = "PNEUMOSCOPE_CACHE"


def data_root() -> Path:
    """Root of the real data (``$PNEUMOSCOPE_DATA``, default ``../shared/data`` next to the checkout)."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    candidates = [Path.cwd().parent / "shared" / "data", Path(__file__).resolve().parents[3] / "shared" / "data"]
    return next((c for c in candidates if c.is_dir()), candidates[0])


def cache_root() -> Path:
    """Folder for preprocessed image caches (``$PNEUMOSCOPE_CACHE``, default ``~/.cache/pneumoscope``)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pneumoscope"
