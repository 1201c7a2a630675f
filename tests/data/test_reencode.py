"""Random re-encoding (``data.reencode``): what it returns is what decoding its file gives, on the [0, 1] scale."""

from __future__ import annotations

import numpy as np
import pytest

from pneumoscope.data import image_stats
from pneumoscope.data.imaging import decode_image_bytes, unit_float
from pneumoscope.data.reencode import reencode


@pytest.mark.parametrize("seed", range(6))
def test_the_reencoded_image_is_its_files_decoding_as_float_in_unit_range(make_xray, seed: int) -> None:
    gray = make_xray(256, seed=seed).astype(np.float32) / 255.0
    encoded = reencode(gray, np.random.default_rng(seed), sides=(160, 400))
    assert encoded.gray.dtype == np.float32 and 0.0 <= encoded.gray.min() and encoded.gray.max() <= 1.0
    assert 160 <= max(encoded.gray.shape) <= 400
    assert encoded.format in ("jpeg", "png")
    decoded = unit_float(decode_image_bytes(encoded.data, f"x.{'jpg' if encoded.format == 'jpeg' else 'png'}").gray)
    np.testing.assert_array_equal(encoded.gray, decoded)


def test_image_statistics_of_a_reencoded_xray_stay_those_of_an_xray(make_xray) -> None:
    gray = make_xray(320, seed=1).astype(np.float32) / 255.0
    original = image_stats.thumbnail_stats(image_stats.downsample(gray))
    again = image_stats.thumbnail_stats(image_stats.downsample(reencode(gray, np.random.default_rng(2)).gray))
    assert abs(again.entropy - original.entropy) < 1.0 and again.dynamic_range <= 1.0
