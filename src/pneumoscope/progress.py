"""Progress bars and status lines on stderr, shared by every long step (scans, caches, scoring, folds, stress tests)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def progress_bar(enabled: bool = True, transient: bool = False) -> Progress:
    """A rich progress bar on stderr with count, elapsed time and ETA; drawn only where ``enabled``."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=Console(stderr=True), disable=not enabled, transient=transient)


def status_line(message: str, enabled: bool = True) -> None:
    """One status line on stderr (e.g. "fold 2 of 5: finished, skipped")."""
    if enabled:
        Console(stderr=True).print(message, highlight=False, soft_wrap=True)
