"""The out-of-distribution guard: real X-rays pass, non-X-rays are flagged; the feature reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from nonxray import NON_XRAYS

from pneumoscope.errors import ModelError
from pneumoscope.inference import ood
from pneumoscope.inference.predictor import as_loaded_image
from pneumoscope.inference.sources import iter_image_files, load_input


def verdict(image: np.ndarray) -> ood.OODResult:
    loaded = as_loaded_image(image)
    return ood.combine(ood.image_score(ood.image_stats(loaded.gray, loaded.colourfulness)), None)


@pytest.mark.parametrize("kind", sorted(NON_XRAYS))
def test_non_xrays_are_flagged_with_a_reason(kind: str) -> None:
    rng = np.random.default_rng(7)
    for _ in range(3):
        result = verdict(NON_XRAYS[kind](rng))
        assert result.ood and result.score >= 1.0 and result.reasons, kind


def test_synthetic_chest_like_image_is_not_flagged(make_xray) -> None:
    result = verdict(make_xray(256, 3))
    assert not result.ood and result.score < 1.0 and result.reasons == ()


def test_colourfulness_is_zero_for_grey_and_high_for_colour(rng) -> None:
    grey = np.repeat(rng.integers(0, 256, (32, 32, 1), dtype=np.uint8), 3, axis=-1)
    assert ood.colourfulness(grey) == 0.0
    assert ood.colourfulness(NON_XRAYS["colour photo"](rng)) > 20


@pytest.mark.realdata
def test_false_flag_rate_on_real_xrays_is_at_most_one_percent(real_data: Path) -> None:
    rng = np.random.default_rng(0)
    kermany = list(iter_image_files([real_data / "chest_xray" / "train"]))
    covid = list(iter_image_files([real_data / "covid19_radiography"]))
    fullres = list(iter_image_files([real_data / "chest_xray_fullres_sample"]))
    sample = [*rng.choice(kermany, 150, replace=False), *rng.choice(covid, 150, replace=False), *fullres]
    flagged = [p for p in sample if verdict(load_input(p)).ood]
    assert len(flagged) / len(sample) <= 0.01, flagged


def test_feature_reference_separates_shifted_features_and_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(8, 64))
    train = rng.normal(size=(600, 8)) @ basis + 0.05 * rng.normal(size=(600, 64))
    same = rng.normal(size=(200, 8)) @ basis + 0.05 * rng.normal(size=(200, 64))
    shifted = same + rng.normal(0, 1.0, size=(200, 64))  # leaves the training subspace
    reference = ood.fit_feature_reference(train, n_components=8)
    assert (reference.score(same) >= 1).mean() <= 0.02
    assert (reference.score(shifted) >= 1).mean() >= 0.98

    reference.save(tmp_path)
    loaded = ood.FeatureReference.load(tmp_path)
    np.testing.assert_allclose(loaded.score(shifted), reference.score(shifted), rtol=1e-3)
    np.testing.assert_allclose(ood.FeatureReference.from_text(reference.to_text()).score(same),
                               reference.score(same), rtol=1e-3)
    assert ood.FeatureReference.load(tmp_path / "missing") is None


def test_corrupt_feature_reference_is_a_model_error(tmp_path: Path) -> None:
    (tmp_path / ood.FEATURE_REFERENCE_FILE).write_bytes(b"garbage bytes")
    with pytest.raises(ModelError, match="unreadable OOD feature reference"):
        ood.FeatureReference.load(tmp_path)


def test_feature_score_joins_the_verdict() -> None:
    assert ood.combine((0.2, ()), 3.0).ood
    assert "features unlike the training X-rays" in ood.combine((0.2, ()), 3.0).reasons
    assert not ood.combine((0.2, ()), 0.5).ood
