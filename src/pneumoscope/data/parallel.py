"""Process-pool map with an optional rich progress bar, used by the manifest scan and the cache build."""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Below this many items the pool's start-up costs more than it saves.
MIN_ITEMS_FOR_POOL = 256


def default_workers() -> int:
    """Worker processes to use: the CPU cores this process may run on, at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


def show_progress(progress: bool | None) -> bool:
    """``progress`` itself, or (None) whether stderr is a terminal."""
    return sys.stderr.isatty() if progress is None else progress


def parallel_map(function: Callable[[T], R], items: Sequence[T], *, workers: int | None = None,
                 chunksize: int = 32, description: str = "working", progress: bool | None = None,
                 total: int | None = None, weight: Callable[[R], int] | None = None,
                 min_items: int = MIN_ITEMS_FOR_POOL) -> Iterator[R]:
    """``function`` over ``items`` in order, in worker processes when there are at least ``min_items`` items.

    The progress bar counts ``total`` units (default: one per item); ``weight(result)`` says how many units one
    result stands for (e.g. the images of a chunk).

    Workers are forked (on Linux): unlike spawn / forkserver this needs no ``if __name__ == "__main__"`` guard in
    the caller's script and starts in milliseconds. The children use only Pillow, pydicom, NumPy and OpenCV.
    """
    workers = default_workers() if workers is None else max(1, workers)
    # A daemonic process (e.g. a DataLoader worker) may not start children: work serially there.
    use_pool = workers > 1 and len(items) >= min_items and not multiprocessing.current_process().daemon
    units = len(items) if total is None else total
    if not use_pool:
        with _progress(show_progress(progress), description, units) as advance:
            for item in items:
                result = function(item)
                yield result
                advance(1 if weight is None else weight(result))
        return
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
    try:
        # Submitting starts the workers: fork them before the progress bar starts its refresh thread.
        results = pool.map(function, items, chunksize=chunksize)
        with _progress(show_progress(progress), description, units) as advance:
            for result in results:
                yield result
                advance(1 if weight is None else weight(result))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # on an error, drop the work not yet started


class _progress:
    """Context manager yielding an ``advance(units)`` callable that moves a rich progress bar (or does nothing)."""

    def __init__(self, enabled: bool, description: str, total: int):
        self.enabled, self.description, self.total = enabled, description, total
        self._bar = None

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled:
            return lambda units: None
        from pneumoscope.progress import progress_bar

        self._bar = progress_bar()
        self._bar.__enter__()
        task = self._bar.add_task(self.description, total=self.total)
        return lambda units: self._bar.advance(task, units)

    def __exit__(self, *exc_info) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc_info)

