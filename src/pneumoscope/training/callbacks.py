"""Lightning callbacks of a training run: the per-epoch record (metrics.csv, also sent to the experiment loggers),
the epoch checkpoint that makes each finished epoch durable, and stage-aware early stopping.

The epoch record lives in the checkpoint (the recorder's state), and metrics.csv is written from it only after the
checkpoint holding the epoch is on disk: the run's record never claims an epoch its checkpoint does not hold, and
after a resume the file holds exactly the epochs that the checkpoint holds, each once, whatever moment the kill
came at.
"""

from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Checkpoint, EarlyStopping
from lightning.pytorch.utilities import rank_zero_only

from pneumoscope import faults
from pneumoscope.files import atomic_write_text
from pneumoscope.training.checkpointing import EPOCH_CHECKPOINT_STATE
from pneumoscope.training.tracking import log_epoch

METRIC_COLUMNS = ("epoch", "stage", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds",
                  "images_per_second")


def metrics_csv_text(rows: list[dict[str, Any]]) -> str:
    """CSV text of epoch rows in ``METRIC_COLUMNS`` order."""
    stream = io.StringIO()
    writer = csv.DictWriter(stream, fieldnames=METRIC_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return stream.getvalue()


class EpochRecorder(L.Callback):
    """Records one row per finished epoch and keeps the rows in the checkpoint; ``publish`` writes ``metrics.csv``
    (``EpochCheckpoint`` calls it once the epoch is saved).

    ``on_epoch`` (optional) is called on rank zero with each new row, once it is saved, e.g. to print a summary line.
    """

    def __init__(self, csv_path: str | Path, on_epoch: Any = None):
        self.csv_path = Path(csv_path)
        self.on_epoch = on_epoch
        self.rows: list[dict[str, Any]] = []
        self._epoch_start = 0.0
        self._train_end: float | None = None
        self._images = 0
        self._lr = float("nan")

    @property
    def state_key(self) -> str:
        return "EpochRecorder"

    def state_dict(self) -> dict[str, Any]:
        return {"rows": [dict(row) for row in self.rows]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = [dict(row) for row in state_dict.get("rows", [])]

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # after a resume: drop rows of epochs that finished after the checkpoint was written
        self._write(trainer)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start = time.perf_counter()
        self._train_end = None
        self._images = 0
        self._lr = float("nan")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._images == 0:  # the lr this epoch starts with (after a stage change, the new stage's)
            self._lr = pl_module.current_lr()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._images += int(batch[1].shape[0])

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.training and self._train_end is None:
            self._train_end = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        now = time.perf_counter()
        train_seconds = (self._train_end or now) - self._epoch_start
        figures = pl_module.train_epoch_figures()
        row = {
            "epoch": int(trainer.current_epoch) + 1,
            "stage": int(pl_module.stage),
            "train_loss": round(figures["train_loss"], 6),
            "train_acc": round(figures["train_acc"], 6),
            "val_loss": round(pl_module.epoch_figures.get("val_loss", float("nan")), 6),
            "val_acc": round(pl_module.epoch_figures.get("val_acc", float("nan")), 6),
            "lr": self._lr,
            "seconds": round(now - self._epoch_start, 3),
            "images_per_second": round(self._images * trainer.world_size / max(train_seconds, 1e-9), 2),
        }
        self.rows = [r for r in self.rows if r["epoch"] < row["epoch"]] + [row]

    def publish(self, trainer: L.Trainer) -> None:
        """Write ``metrics.csv`` and report the latest row; call it when the checkpoint holds that row."""
        self._write(trainer)
        if self.rows:
            log_epoch(trainer.loggers, self.rows[-1])
        if self.on_epoch is not None and trainer.is_global_zero and self.rows:
            self.on_epoch(self.rows[-1], trainer)

    @rank_zero_only
    def _write(self, trainer: L.Trainer) -> None:
        atomic_write_text(self.csv_path, metrics_csv_text(self.rows))


class EpochCheckpoint(Checkpoint):
    """Saves each finished epoch in one atomic step, then what follows from it.

    At the end of epoch N: ``last`` (the whole training state, with the epoch's row and the best epoch so far) is
    the commit; then ``best`` (weights only) if N is the best epoch by validation loss (``best_row``); then
    ``metrics.csv``. A kill before ``last`` is in place leaves no trace of epoch N, which is trained again; a kill
    after it loses nothing: on resume metrics.csv is rewritten from the checkpoint, and
    ``checkpointing.repair_best_checkpoint`` rebuilds a ``best`` that missed epoch N from ``last`` (whose weights
    are epoch N's). Lightning calls checkpoint callbacks after the others, so the row and the early-stopping state
    of epoch N are in the commit.
    """

    def __init__(self, last: str | Path, best: str | Path, recorder: EpochRecorder):
        self.last = Path(last)
        self.best = Path(best)
        self.recorder = recorder
        self.best_epoch: int | None = None
        self.best_val_loss = math.inf

    @property
    def state_key(self) -> str:
        return EPOCH_CHECKPOINT_STATE

    def state_dict(self) -> dict[str, Any]:
        return {"best_epoch": self.best_epoch, "best_val_loss": self.best_val_loss}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_epoch = state_dict.get("best_epoch")
        self.best_val_loss = float(state_dict.get("best_val_loss", math.inf))

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.best_epoch is None and self.recorder.rows:  # resumed from a checkpoint of an older version
            best = best_row(self.recorder.rows)
            self.best_epoch, self.best_val_loss = int(best["epoch"]), float(best["val_loss"])

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        row = self.recorder.rows[-1]
        improved = self.best_epoch is None or _better(row["val_loss"], self.best_val_loss)
        if improved:
            self.best_epoch, self.best_val_loss = int(row["epoch"]), float(row["val_loss"])
        faults.reached("epoch_end")
        trainer.save_checkpoint(self.last)
        faults.reached("epoch_saved")
        if improved:
            trainer.save_checkpoint(self.best, weights_only=True)
        self.recorder.publish(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        faults.reached("train_batch")


def _better(val_loss: float, best: float) -> bool:
    return math.isfinite(val_loss) and (val_loss < best or not math.isfinite(best))


def best_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The row with the lowest finite validation loss (the first of equal ones; the first row if none is finite):
    the epoch ``EpochCheckpoint`` keeps in ``best.ckpt``."""
    finite = [r for r in rows if math.isfinite(r["val_loss"])]
    return min(finite, key=lambda r: r["val_loss"]) if finite else rows[0]


class StageAwareEarlyStopping(EarlyStopping):
    """Early stopping on validation loss that acts only in the last stage (stage 1 of a two-stage run is short)."""

    def _run_early_stopping_check(self, trainer: L.Trainer) -> None:
        module = trainer.lightning_module
        if getattr(module, "stage", 1) < getattr(module, "last_stage_number", 1):
            return
        super()._run_early_stopping_check(trainer)
