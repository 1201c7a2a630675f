"""Shortcut audit: a source that can be told from the pixels is flagged; shuffled sources are not."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pneumoscope.errors import ConfigError, DataError
from pneumoscope.metrics.shortcut import pixel_features, shortcut_audit


def two_site_images(make_xray, per_site: int = 40) -> tuple[list[np.ndarray], list[str], list[str]]:
    """Site 'b' burns a bright text marker into the corner and is a little darker: an easy shortcut."""
    images, sources, patients = [], [], []
    for i in range(2 * per_site):
        site = "a" if i < per_site else "b"
        image = make_xray(48, seed=i, pneumonia=bool(i % 2)).astype(np.float32)
        if site == "b":
            image = image * 0.85
            image[2:8, 2:14] = 250
        images.append(image.astype(np.uint8))
        sources.append(site)
        patients.append(f"{site}:{i // 2}")  # two images per patient
    return images, sources, patients


def test_source_separable_images_are_flagged_as_a_risk(make_xray):
    images, sources, patients = two_site_images(make_xray)
    audit = shortcut_audit(sources, images=images, groups=patients, n_splits=4)
    assert audit["applicable"] and audit["risk"]
    assert audit["auc"] > 0.95 and audit["n_splits"] == 4 and audit["n_groups"] == 40
    assert "may learn the source" in audit["message"]
    json.dumps(audit, allow_nan=False)


def test_shuffled_sources_are_not_flagged(make_xray, rng):
    images = [make_xray(48, seed=100 + i, pneumonia=bool(i % 2)) for i in range(80)]
    sources = rng.permutation(["a"] * 40 + ["b"] * 40).tolist()
    audit = shortcut_audit(sources, images=images, n_splits=4)
    assert audit["applicable"] and not audit["risk"]
    assert audit["auc"] < 0.75


def test_features_three_sources_and_single_source(rng):
    sources = np.repeat(["kermany", "covid_radiography", "folders"], 30)
    separable = rng.normal(0, 1, (90, 5)) + 4 * (np.arange(90) // 30)[:, None]
    audit = shortcut_audit(sources, features=separable, n_splits=3)
    assert audit["risk"] and set(audit["per_source_auc"]) == {"kermany", "covid_radiography", "folders"}
    assert audit["input"] == "features (5 per image)"
    single = shortcut_audit(["kermany"] * 10, features=rng.normal(size=(10, 3)))
    assert not single["applicable"] and not single["risk"] and "single source" in single["reason"]


def test_pixel_features_and_bad_input():
    features = pixel_features([np.zeros((100, 60), np.uint8), np.full((30, 30), 1.0, np.float32)], size=8)
    assert features.shape == (2, 64) and features[0].max() == 0 and features[1].min() == pytest.approx(1.0)
    with pytest.raises(ConfigError):
        shortcut_audit(["a", "b"])
    with pytest.raises(DataError, match="for 3 source labels"):
        shortcut_audit(["a", "b", "a"], features=np.zeros((2, 4)))


def kermany_patient(name: str) -> str:
    """``IM-0115-0001.jpeg`` → ``IM-0115``; ``NORMAL2-IM-0666-0001.jpeg`` → ``NORMAL2-IM-0666``."""
    return name.rsplit("-", 1)[0]


@pytest.mark.realdata
def test_real_normals_from_two_archives_are_told_apart(real_data):
    """Normal images only, so the disease cannot explain it: children (Kermany) vs adults (COVID-19 Radiography)."""
    from pneumoscope.data.imaging import load_image

    kermany = sorted((real_data / "chest_xray" / "train" / "NORMAL").glob("*.jpeg"))[:120]
    adults = sorted((real_data / "covid19_radiography" / "Normal").glob("*.png"))[:120]
    images = [load_image(path) for path in kermany + adults]
    sources = ["kermany"] * len(kermany) + ["covid_radiography"] * len(adults)
    groups = [kermany_patient(p.name) for p in kermany] + [p.stem for p in adults]
    audit = shortcut_audit(sources, images=images, groups=groups)
    assert audit["risk"] and audit["auc"] > 0.9, audit

    shuffled = np.random.default_rng(0).permutation(["a", "b"] * 60).tolist()  # one archive, two fake sources
    control = shortcut_audit(shuffled, images=images[:120], groups=groups[:120])
    assert not control["risk"], control
