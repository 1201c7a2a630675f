"""The image-statistics check of the scope verdict: real X-rays pass, non-X-rays are flagged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from nonxray import NON_XRAYS

from pneumoscope.data import image_stats
from pneumoscope.data.populations import UNKNOWN_POPULATION
from pneumoscope.inference.predictor import as_loaded_image
from pneumoscope.inference.sources import iter_image_files, load_input
from pneumoscope.models import scope


def verdict(image) -> scope.ScopeVerdict:
    loaded = image if hasattr(image, "gray") else as_loaded_image(image)
    return scope.verdict(None, image_stats.image_score(image_stats.image_stats(loaded.gray, loaded.colourfulness)),
                         None, None, UNKNOWN_POPULATION)


@pytest.mark.parametrize("kind", sorted(NON_XRAYS))
def test_non_xrays_are_flagged_with_a_reason(kind: str) -> None:
    rng = np.random.default_rng(7)
    for _ in range(3):
        result = verdict(NON_XRAYS[kind](rng))
        assert not result.in_scope and result.reasons == ("not_a_chest_xray",) and result.details, kind


def test_synthetic_chest_like_image_is_not_flagged(make_xray) -> None:
    result = verdict(make_xray(256, 3))
    assert result.in_scope and result.reason == "" and result.checks[0].value < 1.0


def test_colourfulness_is_zero_for_grey_and_high_for_colour(rng) -> None:
    grey = np.repeat(rng.integers(0, 256, (32, 32, 1), dtype=np.uint8), 3, axis=-1)
    assert image_stats.colourfulness(grey) == 0.0
    assert image_stats.colourfulness(NON_XRAYS["colour photo"](rng)) > 20


@pytest.mark.realdata
def test_false_flag_rate_on_real_xrays_is_at_most_one_percent(real_data: Path) -> None:
    rng = np.random.default_rng(0)
    kermany = list(iter_image_files([real_data / "chest_xray" / "train"]))
    covid = list(iter_image_files([real_data / "covid19_radiography"]))
    fullres = list(iter_image_files([real_data / "chest_xray_fullres_sample"]))
    sample = [*rng.choice(kermany, 150, replace=False), *rng.choice(covid, 150, replace=False), *fullres]
    flagged = [p for p in sample if not verdict(load_input(p)).in_scope]
    assert len(flagged) / len(sample) <= 0.01, flagged

