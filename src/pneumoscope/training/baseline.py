"""The ``logistic_regression`` baseline: scikit-learn on downsampled pixels, no Lightning, same run folder.

The fit itself is the model registry's ``fit_logistic_regression``; this module feeds it the cached train images,
chooses the operating point on validation like a network run, and writes the same files (one "epoch").
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pneumoscope import __version__
from pneumoscope.tasks import task_classes
from pneumoscope.training.config import TrainConfig


def train_logistic_regression(config: TrainConfig, model: Any, run_dir: Path, manifest, counts: dict,
                              wall_start: float) -> Path:
    """Fit the baseline ``model`` on the train split, choose the operating point on validation, write the run."""
    from sklearn.metrics import log_loss

    from pneumoscope.files import atomic_write_text
    from pneumoscope.models import fit_logistic_regression, save_classifier
    from pneumoscope.training.callbacks import metrics_csv_text
    from pneumoscope.training.datamodule import PneumoDataModule
    from pneumoscope.training.run import (
        SUMMARY_FILE,
        predict_logits,
        validation_operating_point,
        write_curves,
    )

    data = PneumoDataModule(manifest, config)
    train_images, train_labels = data.train_arrays()
    val_images, val_labels = data.val_arrays()
    start = time.perf_counter()
    balanced = "balanced" if config.balance.method != "none" else None
    fit_logistic_regression(model, train_images, train_labels, class_weight=balanced)
    seconds = time.perf_counter() - start
    classes = list(range(len(task_classes(config.task))))
    train_logits = predict_logits(model, train_images)
    val_logits = predict_logits(model, val_images)
    p_train = model.probabilities(torch.from_numpy(train_logits)).numpy()
    p_val = model.probabilities(torch.from_numpy(val_logits)).numpy()
    row = {"epoch": 1, "stage": 1, "train_loss": round(float(log_loss(train_labels, p_train, labels=classes)), 6),
           "train_acc": round(float(np.mean(p_train.argmax(1) == train_labels)), 6),
           "val_loss": round(float(log_loss(val_labels, p_val, labels=classes)), 6),
           "val_acc": round(float(np.mean(p_val.argmax(1) == val_labels)), 6), "lr": float("nan"),
           "seconds": round(seconds, 3), "images_per_second": round(len(train_labels) / max(seconds, 1e-9), 2)}
    atomic_write_text(run_dir / "metrics.csv", metrics_csv_text([row]))
    operating = validation_operating_point(config, model, val_logits, val_labels)
    operating["val_metrics"].update(val_loss=row["val_loss"], epoch=1)
    meta = {"task": config.task, "classes": list(task_classes(config.task)), "image_size": config.data.image_size,
            "preprocessing": {"clahe": config.data.clahe}, "threshold": operating["threshold"],
            "threshold_method": operating["threshold_method"], "temperature": operating["temperature"],
            "val_metrics": operating["val_metrics"], "pneumoscope_version": __version__}
    save_classifier(model, meta, run_dir)
    write_curves(run_dir / "metrics.csv", run_dir / "curves.png")
    summary = {"run_dir": str(run_dir.resolve()), "task": config.task, "model": config.model.name, "epochs": 1,
               "best_epoch": 1, "val_metrics": operating["val_metrics"], "threshold": operating["threshold"],
               "threshold_method": operating["threshold_method"], "temperature": operating["temperature"],
               "split_counts": counts, "wall_seconds": round(time.perf_counter() - wall_start, 2),
               "mean_epoch_seconds": row["seconds"], "mean_images_per_second": row["images_per_second"],
               "device": "cpu", "resumed": False}
    atomic_write_text(run_dir / SUMMARY_FILE, json.dumps(summary, indent=2, default=float) + "\n")
    return run_dir
