"""Generalisation proxies: arithmetic on synthetic trees with known intensities, and file matching on the real data.

The predict function is deliberately simple: p(pneumonia) = the image's mean intensity, so that every figure can be
computed by hand from the pixel values written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pneumoscope.errors import ConfigError, DataError
from pneumoscope.robustness.proxies import (
    bootstrap_ci,
    resolution_consistency,
    resolution_pairs,
    unseen_site_normals,
)

BINARY = ("normal", "pneumonia")
THREE = ("normal", "bacteria", "virus")


def mean_intensity(images: list[np.ndarray]) -> np.ndarray:
    p = np.array([float(image.mean()) for image in images])
    return np.stack([1 - p, p], axis=1)


def mean_intensity_three(images: list[np.ndarray]) -> np.ndarray:
    p = np.array([float(image.mean()) for image in images])
    return np.stack([1 - p, 0.6 * p, 0.4 * p], axis=1)


def write_gray(path: Path, value: int, size: tuple[int, int] = (32, 32)) -> None:
    """A constant 8-bit PNG (width, height) = ``size``: it decodes to exactly value / 255."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size[::-1], value, np.uint8), mode="L").save(path, format="PNG")


# Normal-N.png -> pixel value; p(pneumonia) = value / 255, called pneumonia above 127.5.
UNSEEN = {"Normal-1.png": 40, "Normal-2.png": 90, "Normal-3.png": 120, "Normal-4.png": 130,
          "Normal-5.png": 140, "Normal-6.png": 200, "Normal-7.png": 60, "Normal-8.png": 100}


@pytest.fixture
def unseen_root(tmp_path: Path) -> Path:
    for name, value in UNSEEN.items():
        write_gray(tmp_path / "covid19_radiography" / "Normal" / name, value)
    (tmp_path / "covid19_radiography" / "Normal" / "README.txt").write_text("not an image")
    return tmp_path


def test_unseen_site_normals_by_hand(unseen_root):
    summary, per_image = unseen_site_normals(mean_intensity, unseen_root, BINARY, progress=False)
    values = np.array(list(UNSEEN.values())) / 255.0
    assert summary["n"] == len(UNSEEN) == len(per_image)
    assert summary["specificity"] == pytest.approx(np.mean(values < 0.5)) == pytest.approx(5 / 8)
    assert summary["mean_p_pneumonia"] == pytest.approx(values.mean(), abs=1e-6)
    assert summary["specificity_ci_low"] < summary["specificity"] < summary["specificity_ci_high"]
    assert summary["mean_p_pneumonia_ci_low"] < summary["mean_p_pneumonia"] < summary["mean_p_pneumonia_ci_high"]
    rows = per_image.set_index("file")
    assert set(rows.index) == set(UNSEEN)
    assert rows.loc["Normal-6.png", "predicted"] == "pneumonia"
    assert bool(rows.loc["Normal-3.png", "called_normal"])
    assert rows.loc["Normal-6.png", "p_pneumonia"] == pytest.approx(200 / 255, abs=1e-6)


def test_unseen_site_normals_threshold_and_limit(unseen_root):
    summary, _ = unseen_site_normals(mean_intensity, unseen_root, BINARY, threshold=0.3, progress=False)
    values = np.array(list(UNSEEN.values())) / 255.0
    assert summary["specificity"] == pytest.approx(np.mean(values < 0.3)) == pytest.approx(2 / 8)
    assert summary["threshold"] == 0.3
    limited, per_image = unseen_site_normals(mean_intensity, unseen_root, BINARY, limit=3, progress=False)
    assert limited["n"] == 3
    assert per_image["file"].tolist() == sorted(UNSEEN)[:3]
    three, _ = unseen_site_normals(mean_intensity_three, unseen_root, THREE, progress=False)
    assert three["mean_p_pneumonia"] == pytest.approx(values.mean(), abs=1e-6)  # 1 - p(normal)


def test_bootstrap_ci_is_a_percentile_interval():
    values = np.r_[np.zeros(30), np.ones(70)]
    low, high = bootstrap_ci(values, n_bootstrap=2000, seed=1)
    standard_error = np.sqrt(0.7 * 0.3 / 100)
    assert low == pytest.approx(0.7 - 1.96 * standard_error, abs=0.02)
    assert high == pytest.approx(0.7 + 1.96 * standard_error, abs=0.02)
    assert bootstrap_ci(values, seed=1) == bootstrap_ci(values, seed=1)
    assert bootstrap_ci(np.full(10, 0.25)) == (0.25, 0.25)


def test_unseen_site_normals_missing_or_empty_folder(tmp_path):
    with pytest.raises(DataError, match=r"covid19_radiography/Normal: folder not found; expected the COVID-19"):
        unseen_site_normals(mean_intensity, tmp_path, BINARY, progress=False)
    (tmp_path / "covid19_radiography" / "Normal").mkdir(parents=True)
    with pytest.raises(DataError, match="no PNG/JPEG images"):
        unseen_site_normals(mean_intensity, tmp_path, BINARY, progress=False)
    write_gray(tmp_path / "covid19_radiography" / "Normal" / "Normal-1.png", 10)
    with pytest.raises(ConfigError, match="limit"):
        unseen_site_normals(mean_intensity, tmp_path, BINARY, limit=0, progress=False)


# (folder, name, value of the full-resolution original, value of the 224-px copy)
PAIRS = [
    ("NORMAL", "IM-0001-0001.png", 60, 70),
    ("NORMAL", "IM-0002-0001.png", 100, 140),  # crosses 0.5: the predicted class changes
    ("PNEUMONIA", "person1_bacteria_1.png", 200, 190),
    ("PNEUMONIA", "person2_virus_2.png", 150, 110),  # crosses 0.5 the other way
]


@pytest.fixture
def pairs_root(tmp_path: Path) -> Path:
    for folder, name, original, copy in PAIRS:
        write_gray(tmp_path / "chest_xray_fullres_sample" / "train" / folder / name, original, size=(300, 260))
        write_gray(tmp_path / "chest_xray" / "train" / folder / name, copy, size=(64, 64))
    write_gray(tmp_path / "chest_xray" / "train" / "NORMAL" / "IM-0003-0001.png", 30)  # not in the sample
    return tmp_path


def test_resolution_consistency_by_hand(pairs_root):
    summary, per_image = resolution_consistency(mean_intensity, pairs_root, BINARY, progress=False)
    deltas = np.array([copy - original for _, _, original, copy in PAIRS]) / 255.0
    assert summary["n"] == 4
    assert summary["agreement"] == 0.5 and summary["n_disagree"] == 2
    assert summary["mean_abs_delta_p"] == pytest.approx(np.abs(deltas).mean(), abs=1e-6)
    assert summary["max_abs_delta_p"] == pytest.approx(40 / 255, abs=1e-6)
    assert summary["max_abs_delta_file"] == "IM-0002-0001.png"
    assert summary["mean_delta_p"] == pytest.approx(0.0, abs=1e-6)
    assert summary["accuracy_original"] == 1.0 and summary["accuracy_copy"] == 0.5
    rows = per_image.set_index("file")
    assert rows.loc["IM-0002-0001.png", "delta_p"] == pytest.approx(40 / 255, abs=1e-6)
    assert not rows.loc["person2_virus_2.png", "agree"]
    assert rows["label"].tolist() == ["normal", "normal", "pneumonia", "pneumonia"]
    assert rows["width_original"].eq(300).all() and rows["height_original"].eq(260).all()
    assert rows["width_copy"].eq(64).all()
    np.testing.assert_allclose(rows["max_class_abs_delta"], rows["abs_delta_p"], atol=1e-9)


def test_resolution_consistency_three_class_labels_come_from_file_names(pairs_root):
    summary, per_image = resolution_consistency(mean_intensity_three, pairs_root, THREE, progress=False)
    assert per_image["label"].tolist() == ["normal", "normal", "bacteria", "virus"]
    # original predictions: normal, normal, bacteria (0.6 p > 0.4 p), bacteria -> 3 of 4 right
    assert summary["accuracy_original"] == 0.75


def test_resolution_pairs_must_be_complete(pairs_root):
    assert len(resolution_pairs(pairs_root)) == 4
    (pairs_root / "chest_xray" / "train" / "PNEUMONIA" / "person1_bacteria_1.png").unlink()
    with pytest.raises(DataError, match=r"1 full-resolution originals have no 224-px copy.*PNEUMONIA/person1_bac"):
        resolution_pairs(pairs_root)


def test_resolution_consistency_missing_trees(tmp_path):
    with pytest.raises(DataError, match="chest_xray_fullres_sample/train/NORMAL: folder not found"):
        resolution_consistency(mean_intensity, tmp_path, BINARY, progress=False)
    write_gray(tmp_path / "chest_xray_fullres_sample" / "train" / "NORMAL" / "IM-0001-0001.png", 10)
    with pytest.raises(DataError, match="chest_xray/train/NORMAL: folder not found; expected the 224-px"):
        resolution_consistency(mean_intensity, tmp_path, BINARY, progress=False)


@pytest.mark.realdata
def test_unseen_site_normals_on_the_real_data(real_data):
    summary, per_image = unseen_site_normals(mean_intensity, real_data, BINARY, progress=False)
    assert summary["n"] == 1000 == per_image["file"].nunique()
    assert per_image["file"].str.match(r"Normal-\d+\.png$").all()
    assert summary["specificity"] == pytest.approx(per_image["called_normal"].mean())
    assert summary["mean_p_pneumonia"] == pytest.approx(per_image["p_pneumonia"].mean())
    assert summary["specificity_ci_low"] <= summary["specificity"] <= summary["specificity_ci_high"]
    assert 0 < summary["mean_p_pneumonia_ci_high"] - summary["mean_p_pneumonia_ci_low"] < 0.1


@pytest.mark.realdata
def test_resolution_consistency_on_the_real_data(real_data):
    pairs = resolution_pairs(real_data)
    assert len(pairs) == 60
    assert sum(folder == "NORMAL" for folder, _, _ in pairs) == 30
    summary, per_image = resolution_consistency(mean_intensity, real_data, BINARY, progress=False)
    assert summary["n"] == 60 == per_image["file"].nunique()
    assert per_image["width_copy"].eq(224).all() and per_image["height_copy"].eq(224).all()
    assert (per_image[["width_original", "height_original"]].min(axis=1) > 224).all()
    assert summary["agreement"] == pytest.approx(per_image["agree"].mean())
    assert summary["mean_abs_delta_p"] == pytest.approx(per_image["abs_delta_p"].mean())
    assert summary["max_abs_delta_p"] == pytest.approx(per_image["abs_delta_p"].max())
    assert summary["mean_abs_delta_p"] > 0  # a resize and a re-encode change the pixels
