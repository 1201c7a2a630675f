"""Lightning checkpoint IO that survives a kill at any moment and never unpickles code.

A checkpoint is written to a temporary file in the same folder, flushed and fsync'ed, then moved over the old one
with ``os.replace`` (atomic on POSIX and Windows) and the folder is fsync'ed: a reader sees either the old complete
file or the new complete file, never a torn one. Loading uses ``torch.load(weights_only=True)``, which accepts only
tensors and plain containers and refuses to execute pickled code. ``repair_best_checkpoint`` completes, on resume,
an epoch whose commit (``last.ckpt``) was written but whose ``best.ckpt`` was not (``callbacks.EpochCheckpoint``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins import CheckpointIO

from pneumoscope.errors import ConfigError
from pneumoscope.files import atomic_write

CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
BEST_CHECKPOINT = "best.ckpt"
EPOCH_CHECKPOINT_STATE = "EpochCheckpoint"  # callbacks.EpochCheckpoint.state_key


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


def repair_best_checkpoint(last: str | Path, best: str | Path) -> bool:
    """Rebuild ``best`` from ``last`` when the epoch in ``last`` is the best one and ``best`` does not hold it (the
    run was killed between the two writes); returns whether it did. ``last``'s weights are that epoch's weights."""
    last, best = Path(last), Path(best)
    if not last.is_file():
        return False
    state = load_checkpoint_file(last)
    best_epoch = state.get("callbacks", {}).get(EPOCH_CHECKPOINT_STATE, {}).get("best_epoch")
    if best_epoch is None or best_epoch != _epoch_number(state):
        return False  # the best epoch is an earlier one: its best.ckpt was complete before this epoch began
    if best.is_file() and _epoch_number(load_checkpoint_file(best)) == best_epoch:
        return False
    weights = {key: state[key] for key in ("epoch", "global_step", "pytorch-lightning_version", "state_dict")
               if key in state}
    AtomicCheckpointIO().save_checkpoint(weights, best)
    return True


def _epoch_number(checkpoint: dict[str, Any]) -> int:
    """The 1-based number of the epoch a checkpoint saved at the end of an epoch holds (Lightning stores the
    0-based index of the epoch that was running)."""
    return int(checkpoint.get("epoch", -1)) + 1


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
