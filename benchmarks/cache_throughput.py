"""Decoded-image cache: images/s decoding the train set from its JPEG files vs reading the uint8 cache.

    python benchmarks/cache_throughput.py [--data DIR] [--size 224] [--clahe] [--limit N] [--workers N] [--out DIR]

DATA defaults to the Kermany set under ``pneumoscope.paths.data_root()``; its official ``train`` rows are used.
Every row is the work a training epoch does to get its images as uint8 ``(size, size)`` arrays:

- JPEG, 1 process: read + decode + ``preprocess`` each file in one process (what a loader without a cache does per
  worker);
- JPEG, N processes: the same spread over a process pool (what ``build_cache`` does once);
- cache build: the one-off cost of writing the cache (decode in N processes + write the memmap);
- cache read: copying every image out of the memory-mapped cache in a random order (an epoch), page cache warm.

The cache is built in a temporary folder (removed afterwards) so that its build is always measured cold.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def decode_all(paths: list[str], size: int, clahe: bool) -> float:
    from pneumoscope.data.imaging import load_image
    from pneumoscope.data.preprocess import preprocess

    started = time.perf_counter()
    for path in paths:
        preprocess(load_image(path), size, clahe=clahe)
    return time.perf_counter() - started


def decode_pool(paths: list[str], hashes: list[str], size: int, clahe: bool, workers: int) -> float:
    from pneumoscope.data.cache import decode_for_cache
    from pneumoscope.data.parallel import parallel_map

    items = [(p, h, size, clahe) for p, h in zip(paths, hashes, strict=True)]
    started = time.perf_counter()
    chunk = max(1, min(32, len(items) // (4 * workers)))
    for _ in parallel_map(decode_for_cache, items, workers=workers, chunksize=chunk, progress=False, min_items=1):
        pass
    return time.perf_counter() - started


def read_epochs(images: np.ndarray, epochs: int, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    for _ in range(epochs):
        for index in rng.permutation(len(images)):
            np.array(images[index])  # one image copied out of the memmap, as a Dataset.__getitem__ does
    return (time.perf_counter() - started) / epochs


def main() -> None:
    from pneumoscope.paths import data_root

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=data_root() / "chest_xray")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--clahe", action="store_true")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N train images")
    parser.add_argument("--workers", type=int, default=None, help="pool processes [default: CPU cores, max 8]")
    parser.add_argument("--epochs", type=int, default=3, help="cache read passes to average")
    parser.add_argument("--out", type=Path, default=None, help="write cache_throughput.json here")
    args = parser.parse_args()

    from rich.console import Console
    from rich.table import Table

    from pneumoscope.data.cache import build_cache
    from pneumoscope.data.manifest import build_manifest
    from pneumoscope.data.parallel import default_workers

    workers = args.workers or default_workers()
    manifest = build_manifest([args.data], workers=workers, progress=False)
    train = manifest[(manifest["official_split"] == "train") & (manifest["status"] == "ok")]
    if args.limit:
        train = train.iloc[: args.limit]
    paths, hashes = train["path"].tolist(), train["sha256"].tolist()
    n = len(paths)
    source_bytes = sum(os.path.getsize(p) for p in paths)

    rows: list[tuple[str, float, float]] = []
    seconds = decode_all(paths, args.size, args.clahe)
    rows.append(("JPEG decode + preprocess, 1 process", seconds, n / seconds))
    seconds = decode_pool(paths, hashes, args.size, args.clahe, workers)
    rows.append((f"JPEG decode + preprocess, {workers} processes", seconds, n / seconds))

    cache_dir = Path(tempfile.mkdtemp(prefix="pneumoscope-cache-bench-"))
    previous = os.environ.get("PNEUMOSCOPE_CACHE")
    os.environ["PNEUMOSCOPE_CACHE"] = str(cache_dir)
    try:
        started = time.perf_counter()
        images = build_cache(paths, hashes, args.size, clahe=args.clahe, workers=workers, progress=False)
        seconds = time.perf_counter() - started
        rows.append(("cache build (once: decode in the pool + write)", seconds, n / seconds))
        cache_bytes = os.path.getsize(images.filename)
        seconds = read_epochs(images, args.epochs)
        rows.append((f"cache read, random order (mean of {args.epochs} epochs)", seconds, n / seconds))
        del images
    finally:
        if previous is None:
            os.environ.pop("PNEUMOSCOPE_CACHE", None)
        else:
            os.environ["PNEUMOSCOPE_CACHE"] = previous
        shutil.rmtree(cache_dir, ignore_errors=True)

    table = Table(title=f"{n} train images of {args.data} → {args.size}px uint8{' + CLAHE' if args.clahe else ''}",
                  title_justify="left")
    table.add_column("step")
    table.add_column("seconds", justify="right")
    table.add_column("images/s", justify="right")
    for name, secs, rate in rows:
        table.add_row(name, f"{secs:.2f}", f"{rate:,.0f}")
    console = Console(width=120)
    console.print(table)
    speedup = rows[3][2] / rows[0][2]
    console.print(f"cache on disk: {cache_bytes / 1e6:.1f} MB ({cache_bytes / n / 1e3:.1f} kB per image); "
                  f"source files: {source_bytes / 1e6:.1f} MB. Cache read vs 1-process JPEG decode: {speedup:.0f}x.")
    console.print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
                  f"{workers} worker processes")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        payload = {"images": n, "size": args.size, "clahe": args.clahe, "workers": workers,
                   "rows": [{"step": a, "seconds": b, "images_per_s": c} for a, b, c in rows],
                   "cache_bytes": cache_bytes, "source_bytes": source_bytes}
        (args.out / "cache_throughput.json").write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
