"""The decoded-image cache: same pixels as decode + preprocess, reused by key, rebuilt when a setting changes,
read-only, atomic, and refusing files that changed since they were hashed."""

from __future__ import annotations

import os

import numpy as np
import pytest
from data_helpers import save_image

from pneumoscope.data.cache import build_cache, cache_file
from pneumoscope.data.imaging import load_image
from pneumoscope.data.manifest import build_manifest
from pneumoscope.data.parallel import MIN_ITEMS_FOR_POOL
from pneumoscope.data.preprocess import preprocess
from pneumoscope.errors import DataError
from pneumoscope.files import is_temporary


@pytest.fixture(scope="module")
def tiny_rows(tiny_kermany):
    m = build_manifest([tiny_kermany], progress=False)
    return m["path"].tolist(), m["sha256"].tolist()


def test_rows_equal_preprocess_of_load_image(tiny_rows, isolated_cache):
    paths, hashes = tiny_rows
    images = build_cache(paths, hashes, 32, progress=False)
    assert images.shape == (len(paths), 32, 32) and images.dtype == np.uint8
    assert isinstance(images, np.memmap) and str(isolated_cache) in str(images.filename)
    for i in (0, len(paths) // 2, len(paths) - 1):
        np.testing.assert_array_equal(images[i], preprocess(load_image(paths[i]), 32))


def test_cache_is_read_only(tiny_rows):
    images = build_cache(*tiny_rows, 32, progress=False)
    with pytest.raises(ValueError):
        images[0, 0, 0] = 1


def test_second_call_reuses_the_file(tiny_rows):
    first = build_cache(*tiny_rows, 24, progress=False)
    stamp = os.stat(first.filename).st_mtime_ns
    second = build_cache(*tiny_rows, 24, progress=False)
    assert second.filename == first.filename and os.stat(second.filename).st_mtime_ns == stamp


def test_key_follows_settings_order_and_content(tiny_rows):
    _, hashes = tiny_rows
    base = cache_file(hashes, 32, False)
    assert cache_file(hashes, 32, True) != base
    assert cache_file(hashes, 48, False) != base
    assert cache_file(hashes[::-1], 32, False) != base
    assert cache_file(["0" * 64] + hashes[1:], 32, False) != base


def test_clahe_cache_holds_clahe_images(tiny_rows):
    paths, hashes = tiny_rows
    plain = build_cache(paths[:4], hashes[:4], 32, progress=False)
    equalised = build_cache(paths[:4], hashes[:4], 32, clahe=True, progress=False)
    assert plain.filename != equalised.filename
    np.testing.assert_array_equal(equalised[1], preprocess(load_image(paths[1]), 32, clahe=True))


def test_order_of_rows_is_kept(tiny_rows):
    paths, hashes = tiny_rows
    forward = build_cache(paths[:6], hashes[:6], 32, progress=False)
    backward = build_cache(paths[:6][::-1], hashes[:6][::-1], 32, progress=False)
    np.testing.assert_array_equal(forward[::-1], backward)


def test_changed_file_is_refused(tmp_path, make_xray):
    path = save_image(tmp_path / "a.png", make_xray(32, seed=1))
    import hashlib

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    save_image(path, make_xray(32, seed=2))  # replaced after the manifest was built
    with pytest.raises(DataError, match="changed since the manifest") as info:
        build_cache([path], [digest], 32, progress=False)
    assert str(path) in str(info.value)
    assert not [p for p in cache_file([digest], 32, False).parent.iterdir() if is_temporary(p)]  # nothing half-written


def test_missing_hashes_are_computed(tiny_rows):
    paths, hashes = tiny_rows
    with_hash = build_cache(paths[:3], hashes[:3], 32, progress=False)
    without = build_cache(paths[:3], ["", None, float("nan")], 32, progress=False)
    assert without.filename == with_hash.filename


def test_empty_and_mismatched_inputs():
    assert build_cache([], [], 32).shape == (0, 32, 32)
    with pytest.raises(DataError, match="2 paths but 1 hashes"):
        build_cache(["a", "b"], ["x"], 32)


def test_truncated_cache_file_is_rebuilt(tiny_rows):
    paths, hashes = tiny_rows
    images = build_cache(paths[:5], hashes[:5], 20, progress=False)
    expected = np.array(images)
    with open(images.filename, "r+b") as handle:
        handle.truncate(100)
    np.testing.assert_array_equal(build_cache(paths[:5], hashes[:5], 20, progress=False), expected)


@pytest.mark.timeout(180)
def test_parallel_build_equals_serial(tmp_path, make_xray):
    """Workers are forked after the parent has run OpenCV's thread pool (a large resize): they must not hang."""
    import hashlib

    import cv2

    cv2.resize(np.random.default_rng(0).random((3000, 3000), dtype=np.float32), (224, 224),
               interpolation=cv2.INTER_AREA)
    paths, hashes = [], []

    for i in range(MIN_ITEMS_FOR_POOL + 4):
        path = save_image(tmp_path / f"{i}.png", make_xray(24, seed=i))
        paths.append(str(path))
        hashes.append(hashlib.sha256(path.read_bytes()).hexdigest())
    parallel = np.array(build_cache(paths, hashes, 16, workers=2, progress=False))
    os.unlink(cache_file(hashes, 16, False))
    serial = np.array(build_cache(paths, hashes, 16, workers=1, progress=False))
    np.testing.assert_array_equal(parallel, serial)


@pytest.mark.timeout(180)
def test_parallel_build_stops_on_a_changed_file(tmp_path, make_xray):
    import hashlib

    paths, hashes = [], []
    for i in range(MIN_ITEMS_FOR_POOL + 4):
        path = save_image(tmp_path / f"{i}.png", make_xray(16, seed=i))
        paths.append(str(path))
        hashes.append(hashlib.sha256(path.read_bytes()).hexdigest())
    save_image(tmp_path / "7.png", make_xray(16, seed=1000))
    with pytest.raises(DataError, match="changed since the manifest") as info:
        build_cache(paths, hashes, 16, workers=2, progress=False)
    assert "7.png" in str(info.value)
    assert not cache_file(hashes, 16, False).exists()
