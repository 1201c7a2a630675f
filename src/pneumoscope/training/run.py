"""``train(config) -> run folder``: data → manifest → splits + leakage check → cache → fit → best model + reports.

The run folder (docs/ARCHITECTURE.md): config.yaml, manifest.csv, metrics.csv, model.safetensors + model.json
(best epoch by validation loss; operating threshold and temperature chosen on validation), curves.png,
summary.json (written last: its presence means the run finished) and checkpoints/ (resumable state).
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from pneumoscope import __version__
from pneumoscope.errors import ConfigError, DataError
from pneumoscope.tasks import label_column, task_classes
from pneumoscope.training.config import TrainConfig, save_config
from pneumoscope.training.tracking import experiment_loggers, is_tracked, log_training_result

CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
BEST_CHECKPOINT = "best.ckpt"
SUMMARY_FILE = "summary.json"
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
# devices


def resolve_accelerator(device: str) -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``; ``cuda`` without a GPU is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but no CUDA GPU is visible to PyTorch.",
                          fix="use --device cpu (or auto), or install a CUDA build of torch.")
    return device


def resolve_precision(precision: str, accelerator: str) -> str:
    """Lightning precision. ``auto``: bf16 autocast on a GPU that has it, fp16 autocast on older GPUs; on a CPU, bf16
    autocast where the CPU has bf16 instructions (AVX512-BF16 or AMX: 2.8 instead of 4.1 GB peak memory and no
    slower, docs/PERFORMANCE.md), else fp32 (bf16 emulated in software would be several times slower)."""
    import torch

    if precision == "auto":
        if accelerator != "cuda":
            return "bf16-mixed" if cpu_has_native_bf16() else "32-true"
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    if precision == "16" and accelerator != "cuda":
        raise ConfigError("trainer.precision 16 (fp16 autocast) needs a CUDA GPU.", fix="use 32 or bf16 on CPU.")
    return {"32": "32-true", "bf16": "bf16-mixed", "16": "16-mixed"}[precision]


def cpu_has_native_bf16() -> bool:
    """True if this CPU runs bf16 matrix maths in hardware (x86 AVX512-BF16 or AMX tiles)."""
    import torch

    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # private helpers of torch.cpu; a build without them: take the safe choice
        return False


def resolve_channels_last(setting: bool | str) -> bool:
    """``auto`` → on, on CPU and GPU: NHWC convolutions are faster on both (oneDNN on CPU: +68 % EfficientNet-Lite0
    training images/s at 128 px on 2 cores, docs/PERFORMANCE.md); results differ only by float rounding."""
    return True if setting == "auto" else bool(setting)


# ------------------------------------------------------------------------------------------------------------
# data


def subsample_patients(manifest, task: str, max_images: int, seed: int):
    """A patient-grouped, class-stratified subsample of about ``max_images`` task images (official test rows kept).

    Whole patients, each class keeping its share (``data.splits.sample_patients``).
    """
    from pneumoscope.data.splits import sample_patients

    column = label_column(task)
    in_task = manifest[column].fillna("").astype(str).ne("")
    if "official_split" in manifest.columns:
        in_task &= manifest["official_split"].fillna("").ne("test")
    pool = manifest.loc[in_task]
    if len(pool) <= max_images:
        return manifest
    chosen = sample_patients(pool["patient_id"], pool[column], max_images, seed, min_images=2)
    keep = ~in_task | manifest["patient_id"].isin(chosen)
    return manifest.loc[keep].reset_index(drop=True)


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
        manifest = subsample_patients(manifest, config.task, config.data.max_images, split_seed)
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


def load_best_weights(model, run_dir: Path) -> None:
    """Load the best epoch's weights (``checkpoints/best.ckpt``, read with weights_only) into ``model``."""
    from pneumoscope.training.checkpointing import load_checkpoint_file

    checkpoint = load_checkpoint_file(run_dir / CHECKPOINT_DIR / BEST_CHECKPOINT)
    prefix = "model."
    state = {k[len(prefix):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    model.load_state_dict(state)


def predict_logits(model, images: np.ndarray, batch_size: int = 64, device: str = "cpu") -> np.ndarray:
    """Logits of uint8 images ``(N, S, S)`` (eval mode, no augmentation)."""
    import torch

    model = model.to(device).eval()
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size]))[:, None]
            outputs.append(model(batch.to(device).float().div_(255.0)).float().cpu())
    return torch.cat(outputs).numpy() if outputs else np.empty((0, 0), dtype=np.float32)


def probabilities_from_logits(model, logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Class probabilities ``(N, K)`` (K = number of classes) from logits scaled by ``1 / temperature``."""
    import torch

    scaled = torch.from_numpy(logits / temperature)
    probs = model.probabilities(scaled) if hasattr(model, "probabilities") else torch.softmax(scaled, dim=1)
    probs = probs.detach().cpu().numpy()
    if probs.ndim == 1 or probs.shape[1] == 1:
        p = probs.reshape(-1)
        probs = np.stack([1.0 - p, p], axis=1)
    return probs


def validation_operating_point(config: TrainConfig, model, logits: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Temperature (optional) and, for the binary task, the threshold chosen on validation; validation metrics."""
    from sklearn.metrics import roc_auc_score

    result: dict[str, Any] = {"temperature": 1.0, "threshold": None, "threshold_method": None}
    ev = config.evaluation
    if ev.temperature:
        from pneumoscope.metrics.calibration import fit_temperature

        result["temperature"] = float(_value(fit_temperature(logits, labels), "temperature"))
    probs = probabilities_from_logits(model, logits, result["temperature"])
    metrics: dict[str, float] = {"accuracy": float(np.mean(probs.argmax(1) == labels)), "n": len(labels)}
    if config.task == "binary":
        p = probs[:, 1]
        if ev.threshold_method == "fixed":
            threshold = ev.fixed_threshold
        else:
            from pneumoscope.metrics.threshold import choose_threshold

            threshold = float(_value(choose_threshold(labels, p, method=ev.threshold_method,
                                                      target_sensitivity=ev.target_sensitivity), "threshold"))
        predicted = (p >= threshold).astype(int)
        positives, negatives = labels == 1, labels == 0
        metrics.update(
            accuracy_at_threshold=float(np.mean(predicted == labels)),
            sensitivity=float(np.mean(predicted[positives] == 1)) if positives.any() else float("nan"),
            specificity=float(np.mean(predicted[negatives] == 0)) if negatives.any() else float("nan"),
            auc=float(roc_auc_score(labels, p)) if positives.any() and negatives.any() else float("nan"),
        )
        result.update(threshold=float(threshold), threshold_method=ev.threshold_method)
    else:
        per_class = {name: float(np.mean(probs.argmax(1)[labels == i] == i)) if (labels == i).any() else float("nan")
                     for i, name in enumerate(task_classes(config.task))}
        metrics["recall_per_class"] = per_class  # type: ignore[assignment]
    result["val_metrics"] = metrics
    return result


def _value(result: Any, name: str) -> float:
    """A float from a helper that returns a number, a mapping or an object with attribute ``name``."""
    if isinstance(result, dict):
        return float(result[name])
    if hasattr(result, name):
        return float(getattr(result, name))
    return float(result)


def write_curves(metrics_csv: Path, out: Path) -> Path:
    """Training curves (loss and accuracy per epoch) as PNG, drawn by the report's own plot."""
    from pneumoscope.report.plots import plot_training_curves

    plot_training_curves(metrics_csv, out)
    return out


def _summary(config: TrainConfig, run_dir: Path, rows: list[dict[str, Any]], operating: dict[str, Any],
             counts: dict[str, dict[str, int]], accelerator: str, precision: str, wall: float,
             resumed: bool) -> dict[str, Any]:
    import lightning
    import torch

    from pneumoscope.training.callbacks import best_row

    best = best_row(rows) if rows else {}
    return {
        "run_dir": str(run_dir.resolve()),
        "preset": config.preset,
        "task": config.task,
        "model": config.model.name,
        "pretrained": config.model.pretrained,
        "strategy": config.strategy.kind,
        "image_size": config.data.image_size,
        "epochs": len(rows),
        "best_epoch": best.get("epoch"),
        "best_val_loss": best.get("val_loss"),
        "best_val_acc": best.get("val_acc"),
        "val_metrics": operating.get("val_metrics", {}),
        "threshold": operating.get("threshold"),
        "threshold_method": operating.get("threshold_method"),
        "temperature": operating.get("temperature"),
        "split_counts": counts,
        "wall_seconds": round(wall, 2),
        "mean_epoch_seconds": round(float(np.mean([r["seconds"] for r in rows])), 2) if rows else None,
        "mean_images_per_second": round(float(np.mean([r["images_per_second"] for r in rows])), 2) if rows else None,
        "device": accelerator,
        "device_name": torch.cuda.get_device_name(0) if accelerator == "cuda" else platform.processor() or "cpu",
        "precision": precision,
        "resumed": resumed,
        "versions": {"pneumoscope": __version__, "torch": torch.__version__, "lightning": lightning.__version__},
        "finished": datetime.now().isoformat(timespec="seconds"),
    }


def _finalize(config, run_dir, trainer, module, datamodule, accelerator, counts, wall_start, resumed) -> None:
    from pneumoscope.files import atomic_write_text
    from pneumoscope.models import save_classifier
    from pneumoscope.training.callbacks import EpochRecorder, best_row

    model = module.model
    load_best_weights(model, run_dir)
    images, labels = datamodule.val_arrays()
    logits = predict_logits(model, images, device="cuda" if accelerator == "cuda" else "cpu")
    model = model.to("cpu").to(memory_format=__import__("torch").contiguous_format)
    operating = validation_operating_point(config, model, logits, labels)
    recorder = next(c for c in trainer.callbacks if isinstance(c, EpochRecorder))
    best = best_row(recorder.rows)  # the epoch whose weights best.ckpt holds
    operating["val_metrics"].update(val_loss=best["val_loss"], epoch=best["epoch"])
    meta = {
        "task": config.task,
        "classes": list(task_classes(config.task)),
        "image_size": config.data.image_size,
        "preprocessing": {"clahe": config.data.clahe},
        "threshold": operating["threshold"],
        "threshold_method": operating["threshold_method"],
        "temperature": operating["temperature"],
        "val_metrics": operating["val_metrics"],
        "pneumoscope_version": __version__,
        "training": {"preset": config.preset, "epochs": len(recorder.rows), "seed": config.seed},
    }
    save_classifier(model, meta, run_dir)
    write_curves(run_dir / "metrics.csv", run_dir / "curves.png")
    summary = _summary(config, run_dir, recorder.rows, operating, counts, accelerator,
                       str(trainer.precision), time.perf_counter() - wall_start, resumed)
    atomic_write_text(run_dir / SUMMARY_FILE, json.dumps(summary, indent=2, default=float) + "\n")
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
