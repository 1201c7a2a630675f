"""Test-time augmentation views and their reduction."""

from __future__ import annotations

import numpy as np
import pytest

from pneumoscope.errors import ConfigError
from pneumoscope.inference.tta import MAX_VIEWS, VIEWS, apply_view, check_views, reduce_views, tta_batch


def test_identity_view_is_first_and_unchanged(make_xray) -> None:
    image = make_xray(48, 1).astype(np.float32) / 255
    assert VIEWS[0].name == "identity"
    np.testing.assert_array_equal(apply_view(image, VIEWS[0]), image)


def test_views_are_mild_and_keep_shape_and_range(make_xray) -> None:
    image = make_xray(64, 2).astype(np.float32) / 255
    for view in VIEWS[1:]:
        out = apply_view(image, view)
        assert out.shape == image.shape and out.dtype == np.float32
        assert 0.0 <= out.min() and out.max() <= 1.0
        assert 0 < np.abs(out - image).mean() < 0.08, view.name


def test_batch_is_image_major_and_reduction_gives_mean_and_std(make_xray) -> None:
    images = np.stack([make_xray(32, s).astype(np.float32) / 255 for s in range(3)])
    batch = tta_batch(images, 4)
    assert batch.shape == (12, 32, 32)
    np.testing.assert_array_equal(batch[4], images[1])  # view 0 of image 1
    probabilities = np.random.default_rng(0).dirichlet([1, 1], size=12)
    mean, std = reduce_views(probabilities, 4)
    np.testing.assert_allclose(mean[2], probabilities[8:12].mean(axis=0))
    np.testing.assert_allclose(std[1], probabilities[4:8].std(axis=0))


@pytest.mark.parametrize("n", [-1, MAX_VIEWS + 1])
def test_view_count_is_validated(n: int) -> None:
    with pytest.raises(ConfigError):
        check_views(n)
    assert check_views(MAX_VIEWS) == MAX_VIEWS
