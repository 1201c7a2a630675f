"""Synthetic inputs for the report tests: predictions, a manifest, training metrics, stress results, a tiny CNN,
and every report section built from them (no trained model needed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from scipy.special import softmax

from pneumoscope.metrics.bootstrap import headline_with_ci
from pneumoscope.metrics.calibration import calibration_summary
from pneumoscope.metrics.classification import classification_metrics
from pneumoscope.metrics.shortcut import shortcut_audit
from pneumoscope.metrics.tables import data_summary, per_class_table, per_group_table
from pneumoscope.report import plots
from pneumoscope.report.html import DEFAULT_SPLIT_USES

CLASSES = ["normal", "bacteria", "virus", "covid"]


def synthetic_predictions(n: int = 240, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(CLASSES), n)
    probs = softmax(rng.normal(0, 1, (n, len(CLASSES))) + 3 * np.eye(len(CLASSES))[y] * rng.random((n, 1)), axis=1)
    sources = np.where(y == 3, "covid_radiography", "kermany")
    patients = np.array([f"{s}:{i // 2}" for i, s in enumerate(sources)])
    return y, probs, sources, patients


def synthetic_manifest(y: np.ndarray, sources: np.ndarray, patients: np.ndarray) -> pd.DataFrame:
    splits = np.array(["train", "val", "test"])[np.arange(y.size) % 3]
    return pd.DataFrame({"split": splits, "source": sources, "label_4class": np.array(CLASSES)[y],
                         "patient_id": patients, "patient_id_known": sources == "kermany",
                         "status": np.where(np.arange(y.size) == 5, "error", "ok")})


def training_metrics(epochs: int = 10) -> pd.DataFrame:
    epoch = np.arange(1, epochs + 1)
    return pd.DataFrame({"epoch": epoch, "stage": (epoch > 3).astype(int), "train_loss": 1.2 / epoch,
                         "train_acc": 1 - 0.6 / epoch, "val_loss": 1.3 / epoch + 0.01 * epoch,
                         "val_acc": 1 - 0.7 / epoch, "lr": 1e-3, "seconds": 2.0})


def stress_rows(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [{"perturbation": "none", "severity": 0, "parameter": "", "accuracy": 0.9, "specificity": 0.86,
             "sensitivity": 0.93, "auc": 0.95, "flip_rate": 0.0, "n": 200}]
    for name in ("contrast", "gamma", "gaussian_blur", "gaussian_noise", "jpeg", "downsample", "rotation"):
        for severity in (1, 3, 5):
            rows.append({"perturbation": name, "severity": severity, "parameter": str(severity / 10),
                         "accuracy": 0.9 - 0.04 * severity * rng.random(), "sensitivity": 0.9,
                         "specificity": 0.86 - 0.06 * severity * rng.random(), "auc": 0.9,
                         "flip_rate": 0.02 * severity, "n": 200})
    rows.append({"perturbation": "invert", "severity": 5, "parameter": "True", "accuracy": 0.41,
                 "specificity": 0.05, "sensitivity": 0.95, "auc": 0.3, "flip_rate": 0.6, "n": 200})
    return pd.DataFrame(rows)


def tiny_cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 8, 5, padding=2), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 4))


def full_sections(make_xray) -> dict:
    """Every section of the report, built from synthetic predictions, images and a tiny CNN."""
    y, probs, sources, patients = synthetic_predictions()
    metrics = classification_metrics(y, probs, CLASSES)
    headline = headline_with_ci(y, probs, CLASSES, groups=patients, n_boot=200)
    calibration = calibration_summary(y, probs)
    images = [make_xray(48, seed=i, pneumonia=bool(y[i])) for i in range(y.size)]
    wrong = np.flatnonzero(probs.argmax(1) != y)
    worst = wrong[np.argsort(-probs[wrong].max(1))][:8]
    captions = [f"true {CLASSES[y[i]]}\npredicted {CLASSES[probs[i].argmax()]} ({probs[i].max():.2f})"
                for i in worst]
    marked = [np.where(np.arange(48)[:, None] < 6, 250, im).astype(np.uint8) if s == "covid_radiography" else im
              for im, s in zip(images, sources)]
    model = tiny_cnn()
    return {
        "headline": {"ci": headline, "note": "Synthetic predictions."},
        "splits": DEFAULT_SPLIT_USES,
        "data_summary": {**data_summary(synthetic_manifest(y, sources, patients), "label_4class"),
                         "notes": ["COVID-19 Radiography Database images have no patient ids."]},
        "per_class": per_class_table(metrics, headline),
        "per_source": per_group_table(y, probs, CLASSES, sources),
        "scope": {"table": pd.DataFrame([{"images": "in scope", "n": 150, "accuracy": 0.8},
                                         {"images": "out of scope", "n": 10, "accuracy": 0.4}]),
                  "note": "Out of scope: adult (10)."},
        "confusion_matrix": plots.plot_confusion_matrix(metrics["confusion_matrix"], CLASSES),
        "roc_pr": plots.plot_roc_pr(y, probs, CLASSES),
        "calibration": {"png": plots.plot_reliability(calibration["reliability"], calibration["ece"]),
                        "ece": calibration["ece"], "brier": calibration["brier"], "temperature": 1.3},
        "training_curves": plots.plot_training_curves(training_metrics()),
        "confident_errors": {"png": plots.plot_thumbnails([images[i] for i in worst], captions),
                             "caption": "The 8 errors with the highest confidence."},
        "shortcut_audit": shortcut_audit(sources, images=marked, groups=patients, n_splits=3),
        "generalisation": {
            "unseen_site_normals": {"proxy": "unseen_site_normals", "n": 1000, "threshold": 0.5,
                                    "specificity": 0.72, "specificity_ci_low": 0.69, "specificity_ci_high": 0.75,
                                    "mean_p_pneumonia": 0.31, "mean_p_pneumonia_ci_low": 0.29,
                                    "mean_p_pneumonia_ci_high": 0.33},
            "resolution_consistency": {"proxy": "resolution_consistency", "n": 60, "agreement": 0.95,
                                       "n_disagree": 3, "mean_abs_delta_p": 0.04, "max_abs_delta_p": 0.41,
                                       "max_abs_delta_file": "IM-0115-0001.jpeg", "accuracy_original": 0.9,
                                       "accuracy_copy": 0.93},
        },
        "stress_test": {"table": stress_rows(), "note": "Validation images, perturbed before preprocessing."},
        "filters": {"filters": plots.plot_filters(model),
                    "feature_maps": plots.plot_feature_maps(model, images[0])},
        "config": {"task": "4class", "model": {"name": "resnet18", "pretrained": False},
                   "training": {"epochs": 10, "lr": 0.001}, "weights_url": "https://example.org/w.pt"},
        "extra": [{"title": "Notes", "text": "Everything above is synthetic."}],
    }
