"""save_classifier / load_classifier: safetensors + JSON, atomic, no pickle, fp16, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pneumoscope.errors import ModelError
from pneumoscope.models import create_model, get_spec, load_classifier, save_classifier
from pneumoscope.models.io import META_FILE, META_KEYS, WEIGHTS_FILE


def meta_for(task: str = "binary") -> dict:
    return {
        "task": task,
        "classes": ["normal", "pneumonia"],
        "image_size": 32,
        "preprocessing": {"clahe": False},
        "threshold": 0.4,
        "threshold_method": "youden",
        "temperature": 1.2,
        "val_metrics": {"accuracy": 0.9},
    }


def size_of(name: str) -> int:
    return max(get_spec(name).min_image_size, 32)


def trained_like(name: str, **kwargs) -> torch.nn.Module:
    """A random-init model whose batch-norm statistics moved away from their init (as after training)."""
    torch.manual_seed(0)
    model = create_model(name, **kwargs)
    model.train()
    with torch.no_grad():
        model(torch.rand(2, 1, size_of(name), size_of(name)))
    return model.eval()


CASES = [
    ("simple_cnn", {"num_classes": 3, "standardize": True}),
    ("resnet18", {"num_classes": 2, "head": "gap_fc", "hidden_units": 16, "dropout": 0.3}),
    ("efficientnet_lite0", {"num_classes": 2, "sigmoid_binary": True}),
    ("googlenet", {"num_classes": 3}),
    ("inception_v3", {"num_classes": 2}),
    ("feedforward", {"num_classes": 2, "pixels": 16}),
    ("logistic_regression", {"num_classes": 2}),
]


@pytest.mark.parametrize(("name", "kwargs"), CASES, ids=[c[0] for c in CASES])
def test_round_trip_gives_equal_outputs(name: str, kwargs: dict, tmp_path: Path) -> None:
    model = trained_like(name, **kwargs)
    x = torch.rand(2, 1, size_of(name), size_of(name))
    expected = model(x)

    save_classifier(model, meta_for(), tmp_path / "run")
    loaded, meta = load_classifier(tmp_path / "run")

    torch.testing.assert_close(loaded(x), expected, rtol=0, atol=0)
    assert not loaded.training
    assert meta["architecture"] == name
    assert meta["model_kwargs"] == model.model_kwargs
    assert set(META_KEYS) <= set(meta)
    assert meta["threshold"] == 0.4
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == sorted([WEIGHTS_FILE, META_FILE])  # no temp files


def test_load_from_the_safetensors_file(tmp_path: Path) -> None:
    model = trained_like("simple_cnn", num_classes=2)
    save_classifier(model, meta_for(), tmp_path)
    loaded, _ = load_classifier(tmp_path / WEIGHTS_FILE)
    x = torch.rand(1, 1, 32, 32)
    torch.testing.assert_close(loaded(x), model(x))


def test_fp16_saving_halves_the_file_and_loads_back_as_float32(tmp_path: Path) -> None:
    from safetensors import safe_open

    model = trained_like("efficientnet_lite0", num_classes=2)
    save_classifier(model, meta_for(), tmp_path / "fp32")
    save_classifier(model, meta_for(), tmp_path / "fp16", half=True)
    with safe_open(str(tmp_path / "fp16" / WEIGHTS_FILE), "pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}  # noqa: SIM118 - safe_open is not a dict
    assert torch.float16 in dtypes and torch.float32 not in dtypes
    size16, size32 = ((tmp_path / d / WEIGHTS_FILE).stat().st_size for d in ("fp16", "fp32"))
    assert size16 < 0.55 * size32

    loaded, _ = load_classifier(tmp_path / "fp16")
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = torch.rand(3, 1, 32, 32)
    torch.testing.assert_close(loaded.probabilities(loaded(x)), model.probabilities(model(x)), atol=2e-2, rtol=0)


def test_a_model_already_in_half_precision_is_saved_and_loaded_as_float32(tmp_path: Path) -> None:
    model = trained_like("simple_cnn", num_classes=2)
    save_classifier(model.to(torch.float16), meta_for(), tmp_path)
    loaded, _ = load_classifier(tmp_path)
    assert next(loaded.parameters()).dtype == torch.float32


def test_the_model_decides_architecture_and_kwargs_in_the_metadata(tmp_path: Path) -> None:
    model = trained_like("feedforward", num_classes=2, pixels=8)
    save_classifier(model, {**meta_for(), "architecture": "resnet18", "model_kwargs": {"num_classes": 2}}, tmp_path)
    meta = json.loads((tmp_path / META_FILE).read_text())
    assert meta["architecture"] == "feedforward" and meta["model_kwargs"]["pixels"] == 8
    assert meta["normalisation"]["name"] == "none"
    load_classifier(tmp_path)


def test_saving_replaces_an_earlier_model_in_place(tmp_path: Path) -> None:
    first, second = trained_like("simple_cnn", num_classes=2), create_model("simple_cnn", 2).eval()
    save_classifier(first, meta_for(), tmp_path)
    save_classifier(second, {**meta_for(), "threshold": 0.7}, tmp_path)
    loaded, meta = load_classifier(tmp_path)
    x = torch.rand(1, 1, 16, 16)
    torch.testing.assert_close(loaded(x), second(x))
    assert meta["threshold"] == 0.7


def test_folder_without_model_files(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"no model\.safetensors here.*pneumoscope train"):
        load_classifier(tmp_path)
    with pytest.raises(ModelError, match="not a model folder"):
        load_classifier(tmp_path / "model.onnx")


def test_weights_that_do_not_match_model_json(tmp_path: Path) -> None:
    save_classifier(trained_like("simple_cnn", num_classes=2), meta_for(), tmp_path)
    meta = json.loads((tmp_path / META_FILE).read_text())
    meta["model_kwargs"]["num_classes"] = 3
    (tmp_path / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ModelError, match=r"do not match model\.json.*wrong shape: head\.fc\.weight"):
        load_classifier(tmp_path)


def test_corrupt_files(tmp_path: Path) -> None:
    save_classifier(trained_like("simple_cnn", num_classes=2), meta_for(), tmp_path)
    weights = tmp_path / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelError, match="cannot read the weights"):
        load_classifier(tmp_path)
    (tmp_path / META_FILE).write_text("{not json")
    with pytest.raises(ModelError, match="cannot read the model metadata"):
        load_classifier(tmp_path)
    (tmp_path / META_FILE).write_text(json.dumps({"architecture": "resnet_9000", "model_kwargs": {"num_classes": 2}}))
    with pytest.raises(ModelError, match="unknown model 'resnet_9000'"):
        load_classifier(tmp_path)
