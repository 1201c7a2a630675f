"""Shared fixtures: an isolated cache for every test, the real data root (skipping only where it is absent), and
small synthetic images."""

from __future__ import annotations

import os
from collections.abc import Iterator

# Tests use tiny tensors: one thread per process avoids oversubscribing CI's 2 shared cores (measured ~10x faster).
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path

import numpy as np
import pytest
import torch
from xray_images import synthetic_xray

from pneumoscope.models.applicability import APPLICABILITY_ENV
from pneumoscope.paths import CACHE_ENV, DATA_ENV, data_root

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch) -> Path:
    """Caches (decoded images, weights, ONNX exports) go to a per-session temporary folder, never the user's."""
    root = tmp_path_factory.getbasetemp() / "pneumoscope-cache"
    monkeypatch.setenv(CACHE_ENV, str(root))
    return root


@pytest.fixture(scope="session")
def tiny_check_file(tmp_path_factory) -> Path:
    """A tiny applicability check fitted by the real code on synthetic images (``applicability_helpers``)."""
    from applicability_helpers import fit_tiny_check

    root = tmp_path_factory.mktemp("tiny-check")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(tmp_path_factory.getbasetemp() / "pneumoscope-cache"))
        return fit_tiny_check(root).save(root / "applicability.safetensors")


@pytest.fixture(autouse=True, scope="session")
def tiny_applicability(tiny_check_file: Path) -> Iterator[Path]:
    """Every test predicts with the tiny check (synthetic X-rays are in scope there); tests of the shipped check
    pass it explicitly or unset the variable. Session-wide, so that module-scoped predictors use it too."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(APPLICABILITY_ENV, str(tiny_check_file))
        yield tiny_check_file


@pytest.fixture(scope="session")
def real_data() -> Path:
    """Root of ../shared/data (or $PNEUMOSCOPE_DATA); tests using it skip only where it is absent."""
    root = data_root()
    if not (root / "chest_xray" / "train").is_dir():
        pytest.skip(f"real data not found at {root} (set {DATA_ENV} to the folder holding chest_xray/)")
    return root


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def make_xray():
    """Factory fixture: ``make_xray(size, seed, pneumonia)`` → uint8 array (see ``synthetic_xray``)."""
    return synthetic_xray


def write_kermany_tree(root: Path, size: int = 64, patients_per_class: int = 10, test_patients: int = 3) -> Path:
    """Write a small Kermany-layout tree ``root/chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}`` of synthetic JPEGs.

    File names follow Kermany's scheme; some patients have two images, so that patient grouping matters.
    """
    from PIL import Image

    base = root / "chest_xray"
    seed = 0

    def save(split: str, folder: str, name: str, pneumonia: bool) -> None:
        nonlocal seed
        seed += 1
        out = base / split / folder
        out.mkdir(parents=True, exist_ok=True)
        Image.fromarray(synthetic_xray(size, seed, pneumonia)).save(out / name, quality=95)

    for split, count, offset in (("train", patients_per_class, 0), ("test", test_patients, 500)):
        for i in range(count):
            n = offset + i
            images = 2 if i % 3 == 0 else 1
            for k in range(images):
                save(split, "NORMAL", f"IM-{n:04d}-{k + 1:04d}.jpeg", False)
                save(split, "PNEUMONIA", f"person{n}_bacteria_{2 * n + k}.jpeg", True)
                save(split, "PNEUMONIA", f"person{1000 + n}_virus_{3 * n + k}.jpeg", True)
    for i in range(2):
        save("val", "NORMAL", f"NORMAL2-IM-{900 + i:04d}-0001.jpeg", False)
        save("val", "PNEUMONIA", f"person{900 + i}_bacteria_{i}.jpeg", True)
    return base


@pytest.fixture(scope="session")
def tiny_kermany(tmp_path_factory) -> Path:
    """A small synthetic Kermany-layout data set (64 px JPEGs), shared by the whole test session (read-only)."""
    return write_kermany_tree(tmp_path_factory.mktemp("tiny_kermany"))
