"""Lightning checkpoint IO that survives a kill at any moment and never unpickles code.

A checkpoint is written to a temporary file in the same folder, flushed and fsync'ed, then moved over the old one
with ``os.replace`` (atomic on POSIX and Windows) and the folder is fsync'ed: a reader sees either the old complete
file or the new complete file, never a torn one. Loading uses ``torch.load(weights_only=True)``, which accepts only
tensors and plain containers and refuses to execute pickled code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins import CheckpointIO

from pneumoscope.errors import ConfigError
from pneumoscope.files import atomic_write


def load_checkpoint_file(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """A checkpoint dictionary read with ``weights_only=True`` (no pickled code is executed)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("checkpoint not found.", path=path, fix="give a run folder whose checkpoints/ holds last.ckpt.")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises UnpicklingError / RuntimeError for foreign or torn files
        raise ConfigError(f"checkpoint cannot be read safely ({type(error).__name__}).", path=path,
                          fix="delete it to restart the run from the previous checkpoint, or start a new run.") from None


class AtomicCheckpointIO(CheckpointIO):
    """Lightning checkpoint IO: atomic ``torch.save`` writes, ``weights_only=True`` loads."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        atomic_write(path, lambda handle: torch.save(checkpoint, handle))

    def load_checkpoint(self, path: str | Path, map_location: Any | None = None,
                        weights_only: bool | None = None) -> dict[str, Any]:
        return load_checkpoint_file(path, map_location=map_location if map_location is not None else "cpu")

    def remove_checkpoint(self, path: str | Path) -> None:
        Path(path).unlink(missing_ok=True)
