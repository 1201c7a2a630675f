"""preprocess: squash to a square, antialiased downscaling, uint8 output, optional CLAHE; bad arrays refused."""

from __future__ import annotations

import numpy as np
import pytest

from pneumoscope.data.preprocess import preprocess, preprocess_settings
from pneumoscope.errors import ConfigError, DataError


def test_output_is_uint8_square(make_xray):
    gray = make_xray(100, seed=1).astype(np.float32) / 255
    out = preprocess(gray, 32)
    assert out.dtype == np.uint8 and out.shape == (32, 32)


def test_same_size_is_only_quantised(make_xray):
    image = make_xray(48, seed=2)
    np.testing.assert_array_equal(preprocess(image.astype(np.float32) / 255, 48), image)
    np.testing.assert_array_equal(preprocess(image, 48), image)  # uint8 input reads the same


def test_downscaling_is_antialiased():
    # a one-pixel checkerboard averages to mid-grey; a plain subsampling resize would keep pure black/white pixels
    checker = (np.indices((256, 256)).sum(axis=0) % 2).astype(np.float32)
    out = preprocess(checker, 32)
    assert np.all(np.abs(out.astype(int) - 128) <= 1)


def test_non_square_image_is_squashed_not_cropped():
    image = np.zeros((100, 300), dtype=np.float32)
    image[:, 200:] = 1.0  # right third white
    out = preprocess(image, 30)
    assert out[:, :19].max() == 0 and out[:, 21:].min() == 255  # the white third stays a third of the width


def test_upscaling_small_image_is_smooth():
    image = np.array([[0.0, 1.0], [0.0, 1.0]], dtype=np.float32)
    image = np.kron(image, np.ones((8, 8), dtype=np.float32))  # 16 x 16
    out = preprocess(image, 64)
    row = out[32].astype(int)
    assert row[0] == 0 and row[-1] == 255 and np.all(np.diff(row) >= 0)


def test_clahe_raises_local_contrast_and_is_deterministic(make_xray):
    flat = (0.45 + 0.1 * make_xray(128, seed=4).astype(np.float32) / 255).astype(np.float32)
    plain = preprocess(flat, 64)
    equalised = preprocess(flat, 64, clahe=True)
    assert equalised.std() > 2 * plain.std()
    np.testing.assert_array_equal(equalised, preprocess(flat, 64, clahe=True))


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 3), np.float32), np.zeros(10, np.float32), np.zeros((0, 5))])
def test_wrong_shapes_are_refused(bad):
    with pytest.raises(DataError, match="2-D grey image"):
        preprocess(bad, 16)


def test_nan_is_refused():
    image = np.zeros((8, 8), np.float32)
    image[0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        preprocess(image, 16)


@pytest.mark.parametrize("size", [0, 4, 3.5, True])
def test_bad_size_is_a_config_error(size):
    with pytest.raises(ConfigError, match="image size"):
        preprocess(np.zeros((8, 8), np.float32), size)


def test_settings_name_everything_that_changes_the_output():
    assert preprocess_settings(224, True) != preprocess_settings(224, False)
    assert preprocess_settings(224, False) != preprocess_settings(256, False)
    assert "version" in preprocess_settings(224, False)


@pytest.mark.realdata
def test_full_resolution_originals_look_like_their_224px_copies(real_data):
    """The 224 px Kermany copies were squashed from the originals: preprocessing an original to 224 px must give
    nearly the same picture as its public copy."""
    from pneumoscope.data.imaging import load_image

    originals = sorted((real_data / "chest_xray_fullres_sample" / "train" / "NORMAL").glob("*.jpeg"))[:5]
    assert originals
    for original in originals:
        copy = real_data / "chest_xray" / "train" / "NORMAL" / original.name
        ours = preprocess(load_image(original), 224).astype(float)
        theirs = preprocess(load_image(copy), 224).astype(float)
        correlation = np.corrcoef(ours.ravel(), theirs.ravel())[0, 1]
        assert correlation > 0.99, (original.name, correlation)
