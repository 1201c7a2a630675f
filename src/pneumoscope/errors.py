"""User-facing errors: one line saying what is wrong, naming the file, and how to fix it."""

from __future__ import annotations

from pathlib import Path


class PneumoscopeError(Exception):
    """An error caused by the user's input (data, config, model files), not by a bug.

    The CLI prints ``str(error)`` as a single line and exits with status 2, without a traceback.
    """

    def __init__(self, message: str, *, path: str | Path | None = None, fix: str | None = None):
        self.message = message
        self.path = Path(path) if path is not None else None
        self.fix = fix
        super().__init__(self._format())

    def _format(self) -> str:
        text = f"{self.path}: {self.message}" if self.path is not None else self.message
        if self.fix:
            text += f" Fix: {self.fix}"
        return text


class DataError(PneumoscopeError):
    """A data set, folder, manifest or image that cannot be used."""


class ImageLoadError(DataError):
    """One image file that cannot be decoded (corrupt, truncated, not an image, too large)."""


class LeakageError(DataError):
    """A patient or an identical image sits on two sides of a split."""


class ConfigError(PneumoscopeError):
    """A configuration value that is invalid or inconsistent."""


class ModelError(PneumoscopeError):
    """An unknown model, missing weights, or a model that does not fit the data or task."""
