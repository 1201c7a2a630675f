"""Helpers shared by the command modules: console output and progress bars."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console

from pneumoscope.progress import progress_bar

T = TypeVar("T")

console = Console(stderr=True)
out = Console()


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate over ``items`` showing a progress bar."""
    with progress_bar() as progress:
        yield from progress.track(items, total=total, description=description)
