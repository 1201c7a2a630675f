"""After the fit: the best weights, the operating point chosen on validation, ``model.json``, the curves and
``summary.json`` of a run folder (one implementation for network runs and the logistic-regression baseline)."""

from __future__ import annotations

import json
import platform
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from pneumoscope.data.populations import Population
from pneumoscope.files import atomic_write_text
from pneumoscope.models.scoring import probabilities
from pneumoscope.tasks import task_classes
from pneumoscope.training.config import TrainConfig
from pneumoscope.version import __version__

SUMMARY_FILE = "summary.json"


def load_best_weights(model, run_dir: Path) -> None:
    """Load the best epoch's weights (``checkpoints/best.ckpt``, read with weights_only) into ``model``."""
    from pneumoscope.training.checkpointing import BEST_CHECKPOINT, CHECKPOINT_DIR, load_checkpoint_file

    checkpoint = load_checkpoint_file(run_dir / CHECKPOINT_DIR / BEST_CHECKPOINT)
    prefix = "model."
    state = {k[len(prefix):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    model.load_state_dict(state)


def validation_operating_point(config: TrainConfig, logits: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Temperature (optional) and, for the binary task, the threshold chosen on validation; validation metrics."""
    from sklearn.metrics import roc_auc_score

    result: dict[str, Any] = {"temperature": 1.0, "threshold": None, "threshold_method": None}
    ev = config.evaluation
    if ev.temperature:
        from pneumoscope.metrics.calibration import fit_temperature

        result["temperature"] = float(fit_temperature(logits, labels))
    probs = probabilities(logits, result["temperature"])
    metrics: dict[str, float] = {"accuracy": float(np.mean(probs.argmax(1) == labels)), "n": len(labels)}
    if config.task == "binary":
        p = probs[:, 1]
        if ev.threshold_method == "fixed":
            threshold = ev.fixed_threshold
        else:
            from pneumoscope.metrics.threshold import choose_threshold

            threshold = float(choose_threshold(labels, p, method=ev.threshold_method,
                                               target_sensitivity=ev.target_sensitivity))
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


def write_curves(metrics_csv: Path, out: Path) -> Path:
    """Training curves (loss and accuracy per epoch) as PNG, drawn by the report's own plot."""
    from pneumoscope.report.plots import plot_training_curves

    plot_training_curves(metrics_csv, out)
    return out


def run_summary(config: TrainConfig, run_dir: Path, rows: list[dict[str, Any]], operating: dict[str, Any],
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
        "train_seconds": round(float(sum(r["seconds"] for r in rows)), 2),
        "mean_epoch_seconds": round(float(np.mean([r["seconds"] for r in rows])), 2) if rows else None,
        "mean_images_per_second": round(float(np.mean([r["images_per_second"] for r in rows])), 2) if rows else None,
        "device": accelerator,
        "device_name": torch.cuda.get_device_name(0) if accelerator == "cuda" else platform.processor() or "cpu",
        "precision": precision,
        "resumed": resumed,
        "versions": {"pneumoscope": __version__, "torch": torch.__version__, "lightning": lightning.__version__},
        "finished": datetime.now().isoformat(timespec="seconds"),
    }


def model_metadata(config: TrainConfig, operating: dict[str, Any], epochs: int,
                   population: Population) -> dict[str, Any]:
    """What ``model.json`` records about a trained model besides its architecture (``models.save_classifier`` adds
    that): task, classes, preprocessing, the validation operating point and metrics, how it was trained, whom its
    training images show (``data.populations``)."""
    return {
        "task": config.task,
        "classes": list(task_classes(config.task)),
        "image_size": config.data.image_size,
        "preprocessing": {"clahe": config.data.clahe},
        "threshold": operating["threshold"],
        "threshold_method": operating["threshold_method"],
        "temperature": operating["temperature"],
        "val_metrics": operating["val_metrics"],
        "pneumoscope_version": __version__,
        "training": {"preset": config.preset, "epochs": int(epochs), "seed": config.seed},
        "population": population.as_dict(),
    }


def write_summary(run_dir: Path, summary: dict[str, Any]) -> Path:
    """``summary.json``, written last: its presence means the run finished."""
    return atomic_write_text(run_dir / SUMMARY_FILE, json.dumps(summary, indent=2, default=float) + "\n")
