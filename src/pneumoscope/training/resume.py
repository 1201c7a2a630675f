"""Continue a run that was stopped at any point (SIGKILL included) from its last finished epoch.

The run's own config.yaml and manifest.csv are reused, so the splits and every setting are those of the original
run; only where it runs (device, data-loader workers) may change. ``checkpoints/last.ckpt`` is written atomically at
the end of every epoch, so at most the epoch that was running is trained again, and the epoch record (metrics.csv)
is restored from that checkpoint: each epoch appears once. A two-stage run resumes in the stage it was in.
"""

from __future__ import annotations

from pathlib import Path

from pneumoscope.errors import ConfigError
from pneumoscope.training.checkpointing import CHECKPOINT_DIR, LAST_CHECKPOINT
from pneumoscope.training.config import load_run_config, validate_config
from pneumoscope.training.finish import SUMMARY_FILE
from pneumoscope.training.run import EpochCallback, train


def is_finished(run_dir: str | Path) -> bool:
    """True when the run wrote its summary (the last file of a run)."""
    return (Path(run_dir) / SUMMARY_FILE).is_file()


def last_checkpoint(run_dir: str | Path) -> Path | None:
    """``checkpoints/last.ckpt`` of the run, or None if no epoch finished yet."""
    path = Path(run_dir) / CHECKPOINT_DIR / LAST_CHECKPOINT
    return path if path.is_file() else None


def resume(
    run_dir: str | Path,
    *,
    device: str | None = None,
    num_workers: int | str | None = None,
    progress: bool = True,
    on_epoch: EpochCallback | None = None,
) -> Path:
    """Continue the run in ``run_dir`` to its configured number of epochs; returns the run folder."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError("run folder not found.", path=run_dir, fix="give the folder of the run to continue.")
    config = load_run_config(run_dir)
    if is_finished(run_dir):
        raise ConfigError("this run has already finished (summary.json exists); there is nothing to resume.",
                          path=run_dir, fix="start a new run with `pneumoscope train --config "
                                            f"{run_dir / 'config.yaml'} --out NEW_DIR`.")
    # where the run goes on may change; what it computes may not
    values = config.to_dict()
    if device is not None:
        values["trainer"]["device"] = device
    if num_workers is not None:
        values["data"]["num_workers"] = num_workers
    config = validate_config(values, source=run_dir / "config.yaml")
    return train(config, run_dir, resume_from=last_checkpoint(run_dir), resuming=True, progress=progress,
                 on_epoch=on_epoch)
