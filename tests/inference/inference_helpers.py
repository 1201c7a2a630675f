"""Helpers for the inference tests: tiny random-init models saved as run folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SMALL_ARCHITECTURES = ("resnet18", "efficientnet_lite0", "mobilenetv3_small_100", "efficientnet_b0")
IMAGE_SIZE = 64


def small_architecture() -> str:
    """The cheapest registry architecture for tests that need just some model."""
    from pneumoscope.models import list_models

    names = list(list_models())
    return next((n for n in SMALL_ARCHITECTURES if n in names), names[0])


def save_run(
    folder: Path,
    architecture: str,
    task: str = "binary",
    image_size: int = IMAGE_SIZE,
    threshold: float | None = 0.3,
    temperature: float = 1.5,
    seed: int = 0,
    outputs: int | None = None,
    **meta_overrides: Any,
) -> Path:
    """A random-init classifier saved with ``save_classifier`` as a run folder (model.safetensors + model.json);
    ``outputs=1`` makes a one-logit (sigmoid) binary model."""
    import torch

    from pneumoscope.models import create_model, save_classifier
    from pneumoscope.tasks import task_classes

    classes = list(task_classes(task))
    outputs = outputs or len(classes)
    torch.manual_seed(seed)
    model = create_model(architecture, num_classes=outputs, pretrained=False).eval()
    meta = {
        "architecture": architecture,
        "model_kwargs": {"num_classes": outputs},
        "task": task,
        "classes": classes,
        "image_size": image_size,
        "preprocessing": {"clahe": False},
        "threshold": threshold if task == "binary" else None,
        "threshold_method": "youden" if task == "binary" else None,
        "temperature": temperature,
        "val_metrics": {"accuracy": 0.5},
        "pneumoscope_version": "test",
    }
    meta.update(meta_overrides)
    save_classifier(model, meta, folder)
    return folder
