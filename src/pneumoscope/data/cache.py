"""The decoded-image cache: every image decoded and preprocessed once into one uint8 memory-mapped array.

The cache file lives under ``paths.cache_root()/images`` and is keyed by the files' content hashes (in order), the
image size, the preprocessing settings and ``PREPROCESS_VERSION``: the same manifest and settings find the same file,
and any change (a file, the size, CLAHE, the preprocessing code) builds a new one. Files are written to a temporary
name and renamed, so an interrupted build never leaves a half-written cache behind.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pneumoscope.data.imaging import decode_image_bytes, read_file_bytes
from pneumoscope.data.parallel import MIN_ITEMS_FOR_POOL, parallel_map
from pneumoscope.data.preprocess import check_image_size, decode_side, preprocess, preprocess_settings
from pneumoscope.errors import DataError
from pneumoscope.files import atomic_path
from pneumoscope.paths import CACHE_ENV, cache_root

CACHE_SUBDIR = "images"
_CHUNK = 64  # images per worker task


def build_cache(paths: Sequence[str | Path], sha256s: Sequence[str], size: int, clahe: bool = False, *,
                workers: int | None = None, progress: bool | None = None) -> np.ndarray:
    """Read-only memmap uint8 ``(N, size, size)`` of ``preprocess(load_image(path), size, clahe)``, rows in the
    order given; built once (in ``workers`` processes, with a progress bar) and reused while the key matches."""
    size = check_image_size(size)
    paths = [str(p) for p in paths]
    hashes = [str(h) if h is not None and str(h) not in ("", "nan") else "" for h in sha256s]
    if len(paths) != len(hashes):
        raise DataError(f"build_cache got {len(paths)} paths but {len(hashes)} hashes.",
                        fix="pass the manifest's path and sha256 columns of the same rows.")
    if not paths:
        return _read_only(np.zeros((0, size, size), dtype=np.uint8))
    hashes = [h or _hash_file(p) for p, h in zip(paths, hashes, strict=True)]
    target = cache_file(hashes, size, clahe)
    cached = _open_existing(target, len(paths), size)
    if cached is not None:
        return cached
    _write_cache(target, paths, hashes, size, clahe, workers, progress)
    return np.load(target, mmap_mode="r")


def cache_key(sha256s: Sequence[str], size: int, clahe: bool) -> str:
    """Hash of the images' content hashes (in order) and the preprocessing settings."""
    payload = json.dumps({"settings": preprocess_settings(size, clahe), "sha256": list(sha256s)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def cache_file(sha256s: Sequence[str], size: int, clahe: bool) -> Path:
    """Where the cache of these images and settings is stored."""
    name = f"{len(sha256s)}x{size}px{'-clahe' if clahe else ''}-{cache_key(sha256s, size, clahe)[:32]}.npy"
    return cache_root() / CACHE_SUBDIR / name


def decode_for_cache(item: tuple[str, str, int, bool]) -> np.ndarray:
    """Decode and preprocess one image for the cache, refusing a file whose content changed since it was hashed."""
    path, expected, size, clahe = item
    data = read_file_bytes(path)
    if hashlib.sha256(data).hexdigest() != expected:
        raise DataError("file changed since the manifest was built (its sha256 differs).", path=path,
                        fix="rebuild the manifest (`pneumoscope data split` or a new training run).")
    return preprocess(decode_image_bytes(data, path, decode_side(size)).gray, size, clahe=clahe)


def _fill_rows(task: tuple[str, int, list[str], list[str], int, bool]) -> int:
    """Decode a chunk of images straight into rows ``start...`` of the cache file (no pixels travel between
    processes); returns the number of rows written."""
    file, start, paths, hashes, size, clahe = task
    array = np.load(file, mmap_mode="r+")
    for offset, (path, expected) in enumerate(zip(paths, hashes, strict=True)):
        array[start + offset] = decode_for_cache((path, expected, size, clahe))
    array.flush()
    return len(paths)


def _write_cache(target: Path, paths: list[str], hashes: list[str], size: int, clahe: bool,
                 workers: int | None, progress: bool | None) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    _check_free_space(target.parent, len(paths) * size * size)
    with atomic_path(target, suffix=".npy") as tmp:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), size, size))
        del array  # header and size written; the rows are filled by _fill_rows
        tasks = [(str(tmp), start, paths[start:start + _CHUNK], hashes[start:start + _CHUNK], size, clahe)
                 for start in range(0, len(paths), _CHUNK)]
        for _ in parallel_map(_fill_rows, tasks, workers=workers, chunksize=1, total=len(paths), weight=int,
                              min_items=max(1, MIN_ITEMS_FOR_POOL // _CHUNK),
                              description=f"caching {size}px images", progress=progress):
            pass


def _open_existing(target: Path, count: int, size: int) -> np.ndarray | None:
    if not target.is_file():
        return None
    try:
        array = np.load(target, mmap_mode="r")
    except (OSError, ValueError):
        return None  # unreadable (e.g. truncated by a full disk): rebuild it
    return array if array.shape == (count, size, size) and array.dtype == np.uint8 else None


def _check_free_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed * 1.05 + 50_000_000:
        raise DataError(f"not enough disk space for the image cache ({needed / 1e9:.2f} GB needed, "
                        f"{free / 1e9:.2f} GB free).", path=folder,
                        fix=f"free some space or set {CACHE_ENV} to a folder on a larger disk.")


def _hash_file(path: str) -> str:
    return hashlib.sha256(read_file_bytes(path)).hexdigest()


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array
