"""Grad-CAM / Grad-CAM++ for every registry architecture (tiny random-init models, small inputs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pneumoscope.errors import ConfigError
from pneumoscope.inference.explain import resolve_class, save_explanation
from pneumoscope.inference.loading import load_predictor
from pneumoscope.inference.predictor import Predictor
from pneumoscope.inference.sources import load_input
from pneumoscope.models import create_model, get_spec, list_models


def cam_size(architecture: str) -> int:
    """A small input the architecture accepts (its registry minimum, at least 64 px for a non-trivial map)."""
    return max(get_spec(architecture).min_image_size, 64)


@pytest.fixture(scope="module")
def real_image(real_data: Path) -> np.ndarray:
    path = min((real_data / "chest_xray_fullres_sample" / "train" / "PNEUMONIA").glob("*.jpeg"))
    return load_input(path).gray


@pytest.mark.realdata
@pytest.mark.parametrize("architecture", list_models())
def test_heatmap_for_every_architecture(architecture: str, real_image: np.ndarray) -> None:
    import torch

    torch.manual_seed(0)
    model = create_model(architecture, num_classes=3)
    meta = {"architecture": architecture, "task": "3class", "classes": ["normal", "bacteria", "virus"],
            "image_size": cam_size(architecture), "temperature": 1.0}
    predictor = Predictor.from_model(model, meta)
    for method in ("gradcam", "gradcam++"):
        result = predictor.explain_array(real_image, method=method)
        heatmap = result["heatmap"]
        assert heatmap.shape == real_image.shape and heatmap.dtype == np.float32
        assert np.isfinite(heatmap).all() and 0.0 <= heatmap.min() and heatmap.max() <= 1.0
        assert result["overlay"].shape == (*real_image.shape, 3) and result["overlay"].dtype == np.uint8
        assert result["target_class"] == result["label"]
    chosen = predictor.explain_array(real_image, method="gradcam", target_class="virus")
    assert chosen["target_class"] == "virus"


def test_explanation_files_and_class_choice(binary_run: Path, make_xray, tmp_path: Path) -> None:
    predictor = load_predictor(binary_run)
    image = make_xray(96, seed=3, pneumonia=True)
    result = predictor.explain_array(image, method="gradcam++", target_class="pneumonia")
    assert result["target_class"] == "pneumonia" and result["heatmap"].shape == (96, 96)
    written = save_explanation(result, tmp_path, "case")
    assert written["overlay"].name == "case_gradcampp_pneumonia_overlay.png"
    from PIL import Image

    assert Image.open(written["overlay"]).size == (96, 96) and Image.open(written["heatmap"]).mode == "RGB"
    # Predictions while explaining are unaffected by the CAM hooks (the CAM runs on a private copy).
    before = predictor.predict_arrays([image])[0]["probabilities"]
    predictor.explain_array(image)
    assert predictor.predict_arrays([image])[0]["probabilities"] == pytest.approx(before, abs=1e-7)


def test_unknown_class_or_method_is_a_config_error(binary_run: Path, make_xray) -> None:
    predictor = load_predictor(binary_run)
    with pytest.raises(ConfigError, match="unknown class 'covid'"):
        predictor.explain_array(make_xray(64, 1), target_class="covid")
    with pytest.raises(ConfigError, match="unknown explanation method"):
        predictor.explain_array(make_xray(64, 1), method="saliency")
    assert resolve_class(("normal", "pneumonia"), 1, "normal") == 1
    assert resolve_class(("normal", "pneumonia"), None, "pneumonia") == 1
