"""The input adapter: grey [0, 1] → channels and normalisation of the backbone; per-image standardisation."""

from __future__ import annotations

import pytest
import torch

from pneumoscope.models import create_model
from pneumoscope.models.adapter import (
    STANDARDIZED_MEAN,
    STANDARDIZED_STD,
    InputAdapter,
    standardize_per_image,
)
from pneumoscope.models.spec import IMAGENET_MEAN, IMAGENET_STD


def test_grey_becomes_three_imagenet_normalised_channels() -> None:
    adapter = InputAdapter(3, IMAGENET_MEAN, IMAGENET_STD)
    x = torch.rand(2, 1, 8, 8)
    out = adapter(x)
    assert out.shape == (2, 3, 8, 8)
    for c in range(3):
        torch.testing.assert_close(out[:, c], (x[:, 0] - IMAGENET_MEAN[c]) / IMAGENET_STD[c])


def test_efficientnet_lite_input_is_minus_one_to_one() -> None:
    adapter = create_model("efficientnet_lite0", 2).adapter
    out = adapter(torch.tensor([0.0, 0.5, 1.0]).view(1, 1, 1, 3))
    torch.testing.assert_close(out[0, :, 0], torch.tensor([[-1.0, 0.0, 1.0]] * 3))


def test_custom_networks_get_one_channel_in_zero_one() -> None:
    adapter = create_model("simple_cnn", 2).adapter
    x = torch.rand(2, 1, 5, 5)
    torch.testing.assert_close(adapter(x), x)


def test_three_dimensional_batch_is_taken_as_one_channel() -> None:
    adapter = InputAdapter(3, IMAGENET_MEAN, IMAGENET_STD)
    assert adapter(torch.rand(2, 8, 8)).shape == (2, 3, 8, 8)
    with pytest.raises(ValueError, match="expected images"):
        adapter(torch.rand(2, 2, 8, 8))


def test_normalisation_constants_are_not_saved_with_the_weights() -> None:
    assert InputAdapter(3, IMAGENET_MEAN, IMAGENET_STD).state_dict() == {}


def test_standardisation_removes_brightness_and_contrast() -> None:
    torch.manual_seed(0)
    x = torch.rand(1, 1, 16, 16) * 0.5 + 0.1
    darker_flatter = x * 0.3 + 0.05
    a, b = standardize_per_image(torch.cat([x, darker_flatter]))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert a.mean().item() == pytest.approx(STANDARDIZED_MEAN, abs=1e-5)
    assert a.std(unbiased=False).item() == pytest.approx(STANDARDIZED_STD, abs=1e-5)


def test_standardisation_of_a_constant_image_is_finite() -> None:
    out = standardize_per_image(torch.full((1, 1, 4, 4), 0.7))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, torch.full_like(out, STANDARDIZED_MEAN), atol=1e-4, rtol=0)


def test_standardize_flag_reaches_the_model() -> None:
    torch.manual_seed(0)
    model = create_model("simple_cnn", 2, standardize=True).eval()
    x = torch.rand(2, 1, 16, 16)
    torch.testing.assert_close(model(x), model(x * 0.5 + 0.2), atol=1e-4, rtol=1e-4)
    plain = create_model("simple_cnn", 2, standardize=False).eval()
    plain.load_state_dict(model.state_dict())
    assert not torch.allclose(plain(x), plain(x * 0.5 + 0.2), atol=1e-4)
