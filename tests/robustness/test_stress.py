"""Stress test on a tiny image set with a deterministic predict function (p(pneumonia) = mean intensity)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pneumoscope.errors import ConfigError, DataError, ModelError
from pneumoscope.robustness.perturbations import get_perturbation, list_perturbations
from pneumoscope.robustness.stress import STRESS_COLUMNS, predicted_classes, stress_test

BINARY = ("normal", "pneumonia")
THREE = ("normal", "bacteria", "virus")
# Mean intensities chosen away from 0.5 so that no prediction is a tie; two normals and one pneumonia are "wrong".
NORMAL_LEVELS = (0.2, 0.3, 0.35, 0.42, 0.58, 0.62)
PNEUMONIA_LEVELS = (0.45, 0.55, 0.66, 0.72, 0.8)


def textured(level: float, seed: int, size: int = 40) -> np.ndarray:
    """A (size, size + 8) image with mean ``level`` and mild texture (so that blur, JPEG... act on it)."""
    rng = np.random.default_rng(seed)
    texture = rng.normal(0, 1, (size, size + 8))
    texture -= texture.mean()
    return np.clip(level + 0.04 * texture / texture.std(), 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def tiny_set() -> tuple[list[np.ndarray], list[int]]:
    levels = NORMAL_LEVELS + PNEUMONIA_LEVELS
    images = [textured(level, i) for i, level in enumerate(levels)]
    labels = [0] * len(NORMAL_LEVELS) + [1] * len(PNEUMONIA_LEVELS)
    return images, labels


def mean_intensity_binary(images: list[np.ndarray]) -> np.ndarray:
    p = np.array([float(image.mean()) for image in images])
    return np.stack([1 - p, p], axis=1)


def mean_intensity_three(images: list[np.ndarray]) -> np.ndarray:
    """p(normal) = 1 - mean; the rest split between bacteria and virus by the left half's share of brightness."""
    p = np.array([float(image.mean()) for image in images])
    left = np.array([float(image[:, : image.shape[1] // 2].mean() / max(image.mean(), 1e-6)) / 2 for image in images])
    left = np.clip(left, 0, 1)
    return np.stack([1 - p, p * left, p * (1 - left)], axis=1)


def hand_metrics(p_pneumonia: list[float], labels: list[int], threshold: float = 0.5) -> dict[str, float]:
    called = [p >= threshold for p in p_pneumonia]
    normals = [i for i, y in enumerate(labels) if y == 0]
    sick = [i for i, y in enumerate(labels) if y != 0]
    return {
        "accuracy": sum(c == (y != 0) for c, y in zip(called, labels)) / len(labels),
        "specificity": sum(not called[i] for i in normals) / len(normals),
        "sensitivity": sum(called[i] for i in sick) / len(sick),
        "mean_p_pneumonia_normals": sum(p_pneumonia[i] for i in normals) / len(normals),
    }


def test_clean_row_equals_the_unperturbed_metrics(tiny_set):
    images, labels = tiny_set
    table = stress_test(images, labels, mean_intensity_binary, BINARY, perturbations=["jpeg"], progress=False)
    clean = table.iloc[0]
    assert (clean["perturbation"], clean["severity"]) == ("none", 0)
    expected = hand_metrics([float(image.mean()) for image in images], labels)
    for key, value in expected.items():
        assert clean[key] == pytest.approx(value, abs=1e-6), key
    assert expected["specificity"] == pytest.approx(4 / 6)  # the set is built that way: the test must see errors
    assert (clean["n"], clean["n_normal"], clean["n_pneumonia"], clean["flip_rate"]) == (11, 6, 5, 0.0)


def test_inverted_intensity_flips_every_prediction_of_a_brightness_model(tiny_set):
    images, labels = tiny_set
    table = stress_test(images, labels, mean_intensity_binary, BINARY, perturbations=["invert"], progress=False)
    clean, inverted = table.iloc[0], table.iloc[1]
    assert (inverted["perturbation"], inverted["severity"], inverted["parameter"]) == ("invert", 1, "True")
    assert inverted["flip_rate"] == 1.0
    assert inverted["accuracy"] == pytest.approx(1 - clean["accuracy"])
    assert inverted["mean_p_pneumonia_normals"] == pytest.approx(1 - clean["mean_p_pneumonia_normals"], abs=1e-6)
    assert inverted["auc"] == pytest.approx(1 - clean["auc"])


def test_every_perturbation_and_severity_gets_one_row(tiny_set):
    images, labels = tiny_set
    table = stress_test(images, labels, mean_intensity_binary, BINARY, severities=(1, 3), progress=False)
    assert list(table.columns) == list(STRESS_COLUMNS)
    multi_level = [n for n in list_perturbations() if len(get_perturbation(n).severities) > 1]
    assert len(table) == 1 + 2 * len(multi_level) + 1  # clean + 2 severities each + invert's single level
    assert set(table["perturbation"]) == {"none", *list_perturbations()}
    assert set(table.loc[table["perturbation"] == "jpeg", "severity"]) == {1, 3}
    assert table["n"].eq(len(images)).all()
    brighter = table[table["perturbation"] == "brightness_up"]
    assert brighter["mean_p_pneumonia_normals"].is_monotonic_increasing  # the model reads brightness as disease
    assert (brighter["specificity"] <= table.iloc[0]["specificity"]).all()


def test_summary_by_kind_averages_each_kind_of_perturbation(tiny_set):
    from pneumoscope.robustness.perturbations import KINDS
    from pneumoscope.robustness.stress import summary_by_kind

    images, labels = tiny_set
    table = stress_test(images, labels, mean_intensity_binary, BINARY, severities=(2, 4), progress=False)
    summary = summary_by_kind(table)
    assert set(summary) == set(KINDS)
    framing = table.loc[table["kind"].eq("framing")]
    assert summary["framing"]["n_conditions"] == len(framing) == 2 * len(list_perturbations("framing"))
    assert summary["framing"]["specificity"] == pytest.approx(framing["specificity"].mean())
    balanced = ((framing["specificity"] + framing["sensitivity"]) / 2).mean()
    assert summary["framing"]["balanced_accuracy"] == pytest.approx(balanced)
    # a table written before the kind column existed gets the same summary
    assert summary_by_kind(table.drop(columns="kind")) == summary


def test_results_do_not_depend_on_the_batch_size(tiny_set):
    images, labels = tiny_set
    kwargs = {"perturbations": ["gaussian_noise", "rotation", "crop"], "severities": (2, 5), "seed": 4,
              "progress": False}
    one = stress_test(images, labels, mean_intensity_binary, BINARY, batch_size=1, **kwargs)
    many = stress_test(images, labels, mean_intensity_binary, BINARY, batch_size=64, **kwargs)
    pd.testing.assert_frame_equal(one, many)
    other_seed = stress_test(images, labels, mean_intensity_binary, BINARY, **{**kwargs, "seed": 5})
    noise = one["perturbation"] == "gaussian_noise"
    assert not np.allclose(one.loc[noise, "mean_p_pneumonia_normals"],
                           other_seed.loc[noise, "mean_p_pneumonia_normals"], rtol=0, atol=1e-9)


def test_labels_may_be_class_names(tiny_set):
    images, labels = tiny_set
    names = [BINARY[y] for y in labels]
    by_index = stress_test(images, labels, mean_intensity_binary, BINARY, perturbations=["invert"], progress=False)
    by_name = stress_test(images, names, mean_intensity_binary, BINARY, perturbations=["invert"], progress=False)
    pd.testing.assert_frame_equal(by_index, by_name)


def test_threshold_moves_the_operating_point(tiny_set):
    images, labels = tiny_set
    table = stress_test(images, labels, mean_intensity_binary, BINARY, perturbations=["invert"], threshold=0.6,
                        progress=False)
    expected = hand_metrics([float(image.mean()) for image in images], labels, threshold=0.6)
    for key, value in expected.items():
        assert table.iloc[0][key] == pytest.approx(value, abs=1e-6), key


def test_three_class_specificity_is_normal_versus_any_pneumonia(tiny_set):
    images, _ = tiny_set
    labels = ["normal"] * 6 + ["bacteria", "virus", "bacteria", "virus", "bacteria"]
    probs = mean_intensity_three(images)
    table = stress_test(images, labels, mean_intensity_three, THREE, perturbations=["invert"], progress=False)
    clean = table.iloc[0]
    predicted = probs.argmax(axis=1)
    y = np.array([THREE.index(label) for label in labels])
    assert clean["accuracy"] == pytest.approx(np.mean(predicted == y))
    assert clean["specificity"] == pytest.approx(np.mean(predicted[:6] == 0))
    assert clean["sensitivity"] == pytest.approx(np.mean(predicted[6:] != 0))
    assert clean["mean_p_pneumonia_normals"] == pytest.approx(np.mean(1 - probs[:6, 0]))


def test_predicted_classes_with_a_threshold_picks_the_likeliest_disease():
    probs = np.array([[0.5, 0.3, 0.2], [0.8, 0.05, 0.15], [0.2, 0.1, 0.7]])
    assert predicted_classes(probs).tolist() == [0, 0, 2]
    assert predicted_classes(probs, threshold=0.25).tolist() == [1, 0, 2]


def test_bad_input_is_a_user_error(tiny_set):
    images, labels = tiny_set
    with pytest.raises(ModelError, match="shape"):
        stress_test(images, labels, lambda batch: np.zeros((len(batch), 3)), BINARY, perturbations=[],
                    progress=False)
    with pytest.raises(ModelError, match="probabilities"):
        stress_test(images, labels, lambda batch: np.full((len(batch), 2), 2.0), BINARY, progress=False)
    with pytest.raises(DataError, match="11 images and 10 labels"):
        stress_test(images, labels[:10], mean_intensity_binary, BINARY, progress=False)
    with pytest.raises(DataError, match="not among the classes"):
        stress_test(images, ["normal"] * 10 + ["covid"], mean_intensity_binary, BINARY, progress=False)
    with pytest.raises(ConfigError, match="unknown perturbation"):
        stress_test(images, labels, mean_intensity_binary, BINARY, perturbations=["fog"], progress=False)
    with pytest.raises(ConfigError, match="severities"):
        stress_test(images, labels, mean_intensity_binary, BINARY, severities=(0, 6), progress=False)
    with pytest.raises(ConfigError, match="start with 'normal'"):
        stress_test(images, labels, mean_intensity_binary, ("pneumonia", "normal"), progress=False)
    with pytest.raises(ConfigError, match="threshold"):
        stress_test(images, labels, mean_intensity_binary, BINARY, threshold=1.5, progress=False)


def test_progress_bar_runs(tiny_set, capsys):
    images, labels = tiny_set
    stress_test(images[:2], labels[:2], mean_intensity_binary, BINARY, perturbations=["invert"], progress=True)
    assert "stress test" in capsys.readouterr().err
