"""The data layer's public functions in one place (what training, evaluation and inference call)."""

from __future__ import annotations

from pneumoscope.data.cache import build_cache
from pneumoscope.data.imaging import load_image, load_image_bytes
from pneumoscope.data.manifest import build_manifest, read_manifest, save_manifest, write_manifest
from pneumoscope.data.preprocess import preprocess
from pneumoscope.data.sources import SourceSpec, detect_layout, read_sources
from pneumoscope.data.splits import assign_splits, check_leakage

__all__ = [
    "SourceSpec", "assign_splits", "build_cache", "build_manifest", "check_leakage", "detect_layout", "load_image",
    "load_image_bytes", "preprocess", "read_manifest", "read_sources", "save_manifest", "write_manifest",
]
