"""``train(config) -> run folder``: data → manifest → splits + leakage check → cache → fit → best model + reports.

The run folder (docs/ARCHITECTURE.md): config.yaml, manifest.csv, metrics.csv, model.safetensors + model.json
(best epoch by validation loss; operating threshold and temperature chosen on validation), curves.png,
summary.json (written last: its presence means the run finished) and checkpoints/ (resumable state).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from pneumoscope.data.populations import manifest_population
from pneumoscope.device import (
    TRAINING_BLOCK_BYTES,
    keep_freed_memory,
    resolve_accelerator,
    resolve_channels_last,
    resolve_precision,
)
from pneumoscope.errors import ConfigError, DataError
from pneumoscope.tasks import label_column, task_classes
from pneumoscope.training.checkpointing import BEST_CHECKPOINT, CHECKPOINT_DIR, LAST_CHECKPOINT
from pneumoscope.training.config import TrainConfig, save_config
from pneumoscope.training.finish import SUMMARY_FILE
from pneumoscope.training.tracking import experiment_loggers, is_tracked, log_training_result

LOGISTIC_REGRESSION = "logistic_regression"

EpochCallback = Callable[[dict[str, Any], Any], None]


# ------------------------------------------------------------------------------------------------------------
# run folder


def default_run_dir(config: TrainConfig, root: str | Path = "runs") -> Path:
    """``runs/<date-time>-<task>-<model>`` (relative to the working directory)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(root) / f"{stamp}-{config.task}-{config.model.name}"


def _prepare_run_dir(run_dir: Path, resuming: bool) -> None:
    if not resuming and (run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT).exists():
        raise ConfigError("this run folder already holds a training run.", path=run_dir,
                          fix=f"continue it with --resume {run_dir}, or choose another --out.")
    if not resuming and (run_dir / SUMMARY_FILE).exists():
        raise ConfigError("this run folder already holds a finished run.", path=run_dir, fix="choose another --out.")
    run_dir.mkdir(parents=True, exist_ok=True)


def remove_leftovers(run_dir: Path) -> None:
    """Delete the temporary files that a run killed mid-write left in its folder and checkpoints/."""
    from pneumoscope.files import remove_temporaries

    for folder in (run_dir, run_dir / CHECKPOINT_DIR):
        remove_temporaries(folder)


def _is_global_zero() -> bool:
    from lightning.pytorch.utilities import rank_zero_only

    return rank_zero_only.rank == 0


# ------------------------------------------------------------------------------------------------------------
# data


def subsample_task(manifest, task: str, max_images: int, seed: int):
    """A patient-grouped, class-stratified subsample of about ``max_images`` images of ``task`` (official test rows
    and rows outside the task are kept as they are)."""
    from pneumoscope.data.splits import subsample_patients

    column = label_column(task)
    pool = manifest[column].fillna("").astype(str).ne("")
    if "official_split" in manifest.columns:
        pool &= manifest["official_split"].fillna("").ne("test")
    return subsample_patients(manifest, column, max_images, seed, pool=pool, min_images=2)

def check_task_data(manifest, task: str, source: str = "the data") -> dict[str, dict[str, int]]:
    """Counts per split and class; a clear ``DataError`` when the data cannot train ``task``."""
    classes = task_classes(task)
    column = label_column(task)
    labelled = manifest.loc[manifest[column].fillna("").astype(str).ne("")]
    usable = labelled.loc[labelled["split"].isin(["train", "val"])] if "split" in labelled else labelled
    present = usable[column].value_counts()
    missing = [c for c in classes if present.get(c, 0) == 0]
    found = ", ".join(f"{c}: {int(n)}" for c, n in present.items()) or "none"
    if len(present) == 0:
        raise DataError(f"no images of task {task!r} in {source} (classes {', '.join(classes)}).",
                        fix="check --data and --task.")
    if len(present) == 1:
        raise DataError(f"{source} holds one class only ({found}); task {task!r} needs {', '.join(classes)}.",
                        fix="add images of the other classes (e.g. a NORMAL and a PNEUMONIA folder).")
    if missing:
        raise DataError(f"task {task!r} needs classes {', '.join(classes)}, but {source} has no "
                        f"{', '.join(missing)} images (found {found}).",
                        fix=f"add a data set with {', '.join(missing)} images, or choose a task these classes fit.")
    counts: dict[str, dict[str, int]] = {}
    for split in ("train", "val"):
        part = usable.loc[usable["split"] == split, column].value_counts()
        counts[split] = {c: int(part.get(c, 0)) for c in classes}
    if sum(counts["val"].values()) == 0:
        raise DataError(f"the validation split of {source} is empty.",
                        fix="raise data.val_fraction, give more patients, or drop --max-images.")
    for split in ("train", "val"):
        lacking = [c for c, n in counts[split].items() if n == 0]
        if lacking:
            raise DataError(f"the {split} split of {source} has no {', '.join(lacking)} images "
                            f"({', '.join(f'{c}: {n}' for c, n in counts[split].items())}).",
                            fix="give more patients of that class, raise data.val_fraction, or drop --max-images.")
    return counts


def build_run_manifest(config: TrainConfig, run_dir: Path, resuming: bool, manifest=None):
    """The manifest with the run's splits: read back from the run folder on resume, else built and saved.

    ``manifest``: splits made by the caller (e.g. one cross-validation fold), checked and saved as they are.
    Either way the leakage check runs on it (``assign_splits``, ``read_manifest`` and ``check_leakage`` check).
    """
    from pneumoscope.data.manifest import build_manifest, read_manifest, write_manifest
    from pneumoscope.data.splits import assign_splits, check_leakage

    saved = run_dir / "manifest.csv"
    if resuming and saved.is_file():
        return read_manifest(saved, check=True)
    if manifest is not None:
        check_leakage(manifest)
        if _is_global_zero():
            write_manifest(manifest, saved)
        return manifest
    if not config.data.paths:
        raise ConfigError("no data given.", fix="pass --data PATH (a data set folder) or data.paths in the config.")
    manifest = build_manifest(config.data.paths)
    split_seed = config.seed if config.data.split_seed is None else config.data.split_seed
    if config.data.max_images is not None:
        manifest = subsample_task(manifest, config.task, config.data.max_images, split_seed)
    manifest = assign_splits(manifest, config.task, config.data.val_fraction, split_seed)
    if _is_global_zero():
        write_manifest(manifest, saved)
    return manifest


# ------------------------------------------------------------------------------------------------------------
# model


def build_model(config: TrainConfig):
    """The ``Classifier`` of ``config.model`` (``models.create_model``); a sigmoid binary model has one logit."""
    from pneumoscope.models import create_model

    m = config.model
    return create_model(m.name, len(task_classes(config.task)), pretrained=m.pretrained, weights=m.weights,
                        head=m.head, dropout=m.dropout, standardize=m.standardize, sigmoid_binary=m.sigmoid_binary,
                        **m.kwargs)


# ------------------------------------------------------------------------------------------------------------
# fit


def quiet_lightning() -> None:
    """Keep Lightning's console output to what a user acts on (our own lines report devices and progress)."""
    import logging
    import warnings

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    for pattern in (".*overridden `on_after_batch_transfer`.*", ".*LeafSpec.*", ".*Checkpoint directory .* exists.*",
                    ".*does not have many workers.*", ".*`isinstance\\(treespec, LeafSpec\\)`.*",
                    ".*smaller than the logging interval.*",  # small runs with an experiment logger
                    # DDP: the epoch metrics are torchmetrics MeanMetrics, already reduced over processes
                    ".*It is recommended to use `self.log\\('val_.*sync_dist=True.*"):
        warnings.filterwarnings("ignore", message=pattern)


def _trainer(config: TrainConfig, run_dir: Path, accelerator: str, progress: bool, on_epoch: EpochCallback | None,
             loggers: list[Any] | None = None):
    import lightning as L
    from lightning.pytorch.callbacks import RichProgressBar

    from pneumoscope.training.callbacks import EpochCheckpoint, EpochRecorder, StageAwareEarlyStopping
    from pneumoscope.training.checkpointing import AtomicCheckpointIO

    t = config.trainer
    ckpt_dir = run_dir / CHECKPOINT_DIR
    recorder = EpochRecorder(run_dir / "metrics.csv", on_epoch=on_epoch)
    callbacks: list[Any] = [recorder]
    if t.early_stopping_patience is not None:
        callbacks.append(StageAwareEarlyStopping(monitor="val_loss", mode="min", patience=t.early_stopping_patience,
                                                 check_on_train_epoch_end=True))
    if progress:
        callbacks.append(RichProgressBar(leave=False, console_kwargs={"stderr": True}))
    callbacks.append(EpochCheckpoint(ckpt_dir / LAST_CHECKPOINT, ckpt_dir / BEST_CHECKPOINT, recorder))
    return L.Trainer(
        accelerator=accelerator,
        devices=t.devices if t.devices != "auto" else ("auto" if accelerator == "cuda" else 1),
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=resolve_precision(t.precision, accelerator),
        max_epochs=t.epochs,
        deterministic=t.deterministic,
        benchmark=not t.deterministic,
        gradient_clip_val=t.gradient_clip,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        logger=loggers or False,
        num_sanity_val_steps=0,
        enable_progress_bar=progress,
        enable_model_summary=False,
        default_root_dir=run_dir,
        log_every_n_steps=10,
    )


def _fit(config: TrainConfig, run_dir: Path, manifest, model, accelerator: str, resume_from: Path | None,
         progress: bool, on_epoch: EpochCallback | None, loggers: list[Any] | None = None):
    import torch

    from pneumoscope.training.augment import BatchAugment
    from pneumoscope.training.balance import class_weights
    from pneumoscope.training.datamodule import PneumoDataModule, resolve_num_workers
    from pneumoscope.training.module import ClassifierModule

    on_gpu = accelerator == "cuda"
    channels_last = resolve_channels_last(config.trainer.channels_last)
    augment = BatchAugment(config.augment, config.data.image_size)
    copy_augment = augment if config.balance.augment is None else BatchAugment(config.balance.augment,
                                                                                config.data.image_size)
    datamodule = PneumoDataModule(manifest, config, pin_memory=on_gpu,
                                  num_workers=resolve_num_workers(config.data.num_workers, on_gpu),
                                  copy_augment=copy_augment)
    weights = None
    if config.balance.method == "class_weights":  # from the manifest's labels: the images are not read here
        weights = class_weights(datamodule.labels[datamodule.train_index], datamodule.num_classes)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    module = ClassifierModule(model, config, class_weights=weights,
                              augment=None if augment.is_identity else augment, channels_last=channels_last)
    trainer = _trainer(config, run_dir, accelerator, progress, on_epoch, loggers)
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume_from) if resume_from else None)
    return trainer, module, datamodule


# ------------------------------------------------------------------------------------------------------------
# after the fit: best weights, validation operating point, reports


def _finalize(config, run_dir, trainer, module, datamodule, accelerator, counts, wall_start, resumed) -> None:
    import torch

    from pneumoscope.models import save_classifier
    from pneumoscope.models.scoring import forward
    from pneumoscope.training.callbacks import EpochRecorder, best_row
    from pneumoscope.training.finish import (
        load_best_weights,
        model_metadata,
        run_summary,
        validation_operating_point,
        write_curves,
        write_summary,
    )

    model = module.model
    load_best_weights(model, run_dir)
    images, labels = datamodule.val_arrays()
    logits, _ = forward(model, images, device="cuda" if accelerator == "cuda" else "cpu")
    model = model.to("cpu").to(memory_format=torch.contiguous_format)
    operating = validation_operating_point(config, logits, labels)
    recorder = next(c for c in trainer.callbacks if isinstance(c, EpochRecorder))
    best = best_row(recorder.rows)  # the epoch whose weights best.ckpt holds
    operating["val_metrics"].update(val_loss=best["val_loss"], epoch=best["epoch"])
    save_classifier(model, model_metadata(config, operating, len(recorder.rows),
                                          manifest_population(datamodule.frame)), run_dir)
    write_curves(run_dir / "metrics.csv", run_dir / "curves.png")
    summary = run_summary(config, run_dir, recorder.rows, operating, counts, accelerator,
                          str(trainer.precision), time.perf_counter() - wall_start, resumed)
    write_summary(run_dir, summary)
    if is_tracked(config):
        log_training_result(run_dir, summary)


# ------------------------------------------------------------------------------------------------------------
# entry point


def train(
    config: TrainConfig,
    out_dir: str | Path | None = None,
    *,
    resume_from: str | Path | None = None,
    resuming: bool = False,
    progress: bool = True,
    on_epoch: EpochCallback | None = None,
    manifest=None,
) -> Path:
    """Train ``config`` into ``out_dir`` (default ``runs/<time>-<task>-<model>``); returns the run folder.

    ``resuming``: continue the run in ``out_dir`` (its saved manifest, from ``resume_from`` if that checkpoint
    exists); use ``training.resume.resume`` rather than calling this directly. ``manifest``: a manifest whose
    ``split`` column the caller made (cross-validation folds); only its ``train`` / ``val`` rows are read.
    """
    import lightning as L

    quiet_lightning()
    keep_freed_memory(TRAINING_BLOCK_BYTES)  # each step's activations reused, not paged in again (device.py)
    wall_start = time.perf_counter()
    if out_dir is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("a multi-process launch (torchrun) needs one run folder for all processes.",
                          fix="pass --out RUN_DIR.")
    run_dir = Path(out_dir) if out_dir is not None else default_run_dir(config)
    _prepare_run_dir(run_dir, resuming)
    if _is_global_zero():
        remove_leftovers(run_dir)
    if not resuming and _is_global_zero():
        save_config(config, run_dir / "config.yaml")
    L.seed_everything(config.seed, workers=True, verbose=False)
    accelerator = resolve_accelerator(config.trainer.device)
    resolve_precision(config.trainer.precision, accelerator)
    model = build_model(config)  # fails fast on a bad name or missing weights, before the data work
    loggers = experiment_loggers(config, run_dir, resuming)  # and so does a tracking store that cannot be reached
    if config.model.name == LOGISTIC_REGRESSION:
        from pneumoscope.training.baseline import train_logistic_regression

        manifest = build_run_manifest(config, run_dir, resuming, manifest)
        counts = check_task_data(manifest, config.task, _data_name(config))
        train_logistic_regression(config, model, run_dir, manifest, counts, wall_start)
        if is_tracked(config):
            log_training_result(run_dir, json.loads((run_dir / SUMMARY_FILE).read_text(encoding="utf-8")))
        return run_dir
    manifest = build_run_manifest(config, run_dir, resuming, manifest)
    counts = check_task_data(manifest, config.task, _data_name(config))
    checkpoint = Path(resume_from) if resume_from is not None and Path(resume_from).is_file() else None
    if checkpoint is not None and _is_global_zero():
        from pneumoscope.training.checkpointing import repair_best_checkpoint

        repair_best_checkpoint(checkpoint, run_dir / CHECKPOINT_DIR / BEST_CHECKPOINT)
    trainer, module, datamodule = _fit(config, run_dir, manifest, model, accelerator, checkpoint, progress, on_epoch,
                                       loggers)
    if trainer.is_global_zero:
        _finalize(config, run_dir, trainer, module, datamodule, accelerator, counts, wall_start, checkpoint is not None)
    return run_dir


def _data_name(config: TrainConfig) -> str:
    return ", ".join(config.data.paths) or "the data"
