"""The ``logistic_regression`` baseline: scikit-learn on downsampled pixels, no Lightning, same run folder.

The fit itself is the model registry's ``fit_logistic_regression``; this module feeds it the cached train images,
chooses the operating point on validation like a network run, and writes the same files (one "epoch").
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from pneumoscope.data.populations import manifest_population
from pneumoscope.tasks import task_classes
from pneumoscope.training.config import TrainConfig
from pneumoscope.training.finish import (
    model_metadata,
    validation_operating_point,
    write_curves,
    write_summary,
)


def train_logistic_regression(config: TrainConfig, model: Any, run_dir: Path, manifest, counts: dict,
                              wall_start: float) -> Path:
    """Fit the baseline ``model`` on the train split, choose the operating point on validation, write the run."""
    from sklearn.metrics import log_loss

    from pneumoscope.files import atomic_write_text
    from pneumoscope.models import fit_logistic_regression, save_classifier
    from pneumoscope.models.scoring import forward, probabilities
    from pneumoscope.training.callbacks import metrics_csv_text
    from pneumoscope.training.datamodule import PneumoDataModule

    data = PneumoDataModule(manifest, config)
    train_images, train_labels = data.train_arrays()
    val_images, val_labels = data.val_arrays()
    start = time.perf_counter()
    balanced = "balanced" if config.balance.method != "none" else None
    fit_logistic_regression(model, train_images, train_labels, class_weight=balanced)
    seconds = time.perf_counter() - start
    classes = list(range(len(task_classes(config.task))))
    train_logits, _ = forward(model, train_images)
    val_logits, _ = forward(model, val_images)
    p_train, p_val = probabilities(train_logits), probabilities(val_logits)
    row = {"epoch": 1, "stage": 1, "train_loss": round(float(log_loss(train_labels, p_train, labels=classes)), 6),
           "train_acc": round(float(np.mean(p_train.argmax(1) == train_labels)), 6),
           "val_loss": round(float(log_loss(val_labels, p_val, labels=classes)), 6),
           "val_acc": round(float(np.mean(p_val.argmax(1) == val_labels)), 6), "lr": float("nan"),
           "seconds": round(seconds, 3), "images_per_second": round(len(train_labels) / max(seconds, 1e-9), 2)}
    atomic_write_text(run_dir / "metrics.csv", metrics_csv_text([row]))
    operating = validation_operating_point(config, val_logits, val_labels)
    operating["val_metrics"].update(val_loss=row["val_loss"], epoch=1)
    save_classifier(model, model_metadata(config, operating, epochs=1, population=manifest_population(data.frame)),
                    run_dir)
    write_curves(run_dir / "metrics.csv", run_dir / "curves.png")
    summary = {"run_dir": str(run_dir.resolve()), "task": config.task, "model": config.model.name, "epochs": 1,
               "best_epoch": 1, "val_metrics": operating["val_metrics"], "threshold": operating["threshold"],
               "threshold_method": operating["threshold_method"], "temperature": operating["temperature"],
               "split_counts": counts, "wall_seconds": round(time.perf_counter() - wall_start, 2),
               "train_seconds": row["seconds"], "mean_epoch_seconds": row["seconds"], "mean_images_per_second": row["images_per_second"],
               "device": "cpu", "resumed": False}
    write_summary(run_dir, summary)
    return run_dir
