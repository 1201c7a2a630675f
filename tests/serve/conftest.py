"""Fixtures for the service tests: a tiny random-init model saved like a trained one, the real Predictor on
it, and a real uvicorn server around them on a free 127.0.0.1 port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_helpers import running_server

IMAGE_SIZE = 64
CLASSES = ["normal", "pneumonia"]
SMALL_ARCHITECTURES = ("simple_cnn", "mobilenetv3_small_100", "efficientnet_lite0", "resnet18", "efficientnet_b0")
VAL_METRICS = {"auroc": 0.5, "accuracy": 0.5, "note": "random-init test model"}


def tiny_architecture() -> str:
    """A cheap architecture of the registry (tests build a random-init one)."""
    from pneumoscope.models import list_models

    names = list(list_models())
    return next((n for n in SMALL_ARCHITECTURES if n in names), names[0])


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A random-init binary model saved with ``save_classifier`` (model.safetensors + model.json)."""
    import torch

    from pneumoscope.models import create_model, save_classifier

    torch.manual_seed(0)
    architecture = tiny_architecture()
    model = create_model(architecture, num_classes=len(CLASSES))
    meta = {
        "architecture": architecture,
        "model_kwargs": {},
        "task": "binary",
        "classes": CLASSES,
        "image_size": IMAGE_SIZE,
        "preprocessing": {"clahe": False},
        "threshold": 0.5,
        "threshold_method": "fixed",
        "temperature": 1.0,
        "val_metrics": VAL_METRICS,
    }
    out = tmp_path_factory.mktemp("serve_model")
    save_classifier(model, meta, out)
    return out


@pytest.fixture(scope="session")
def predictor(model_dir: Path):
    from pneumoscope.inference.loading import load_predictor

    return load_predictor(model_dir)


@pytest.fixture(scope="session")
def server_url(predictor) -> Iterator[str]:
    """A real server (uvicorn, loopback) around the real Predictor, shared by the API tests."""
    from pneumoscope.serve import create_app

    with running_server(create_app(predictor, max_upload_mb=20, max_batch_files=8)) as url:
        yield url
