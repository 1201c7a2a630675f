"""Acquisition-shift perturbations: contract (shape, dtype, range, determinism) and each one's measurable effect."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from xray_images import synthetic_xray

from pneumoscope.errors import ConfigError, DataError
from pneumoscope.robustness.perturbations import (
    REFERENCE_SIZE,
    SEVERITIES,
    describe_perturbations,
    get_perturbation,
    list_perturbations,
    perturb,
)

ALL_CASES = [(name, s) for name in list_perturbations() for s in get_perturbation(name).severities]
RANDOM = [name for name in list_perturbations() if get_perturbation(name).random]
FIXED = [name for name in list_perturbations() if not get_perturbation(name).random]


def xray(size: int = 64, seed: int = 0) -> np.ndarray:
    return synthetic_xray(size, seed).astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """A non-square float image (180 x 224) in [0, 1]: a realistic stored size, small enough to be fast."""
    return xray(REFERENCE_SIZE)[20:200, :]


def highfreq_energy(image: np.ndarray) -> float:
    return float(np.mean(cv2.Laplacian(image.astype(np.float64), cv2.CV_64F) ** 2))


def at_severities(image: np.ndarray, name: str, seed: int = 0) -> list[np.ndarray]:
    return [perturb(image, name, s, seed) for s in get_perturbation(name).severities]


def strictly(values: list[float], increasing: bool) -> bool:
    steps = np.diff(values)
    return bool(np.all(steps > 0)) if increasing else bool(np.all(steps < 0))


def test_registry_covers_the_acquisition_shifts_of_the_issue():
    expected = {"contrast_down", "contrast_up", "gamma_down", "gamma_up", "brightness_down", "brightness_up",
                "gaussian_blur", "gaussian_noise", "poisson_noise", "jpeg", "downsample", "rotation", "crop",
                "invert"}
    assert expected <= set(list_perturbations())
    for name in list_perturbations():
        levels = get_perturbation(name).severities
        assert levels == (1,) if name == "invert" else levels == SEVERITIES


@pytest.mark.parametrize(("name", "severity"), ALL_CASES)
def test_output_contract(image, name, severity):
    before = image.copy()
    out = perturb(image, name, severity, seed=3)
    assert out.shape == image.shape
    assert out.dtype == np.float32
    assert np.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert not np.array_equal(out, image), "every perturbation must change the image"
    np.testing.assert_array_equal(image, before)  # the input is not modified
    np.testing.assert_array_equal(out, perturb(image, name, severity, seed=3))


@pytest.mark.parametrize("name", RANDOM)
def test_random_perturbations_depend_on_the_seed(image, name):
    outputs = {perturb(image, name, 3, seed=(7, i)).tobytes() for i in range(8)}
    # a rotation has two outcomes per severity (clockwise or not), an aspect change two (which side); noise, crop
    # position and shift direction vary with every seed
    assert len(outputs) == (2 if name in ("rotation", "aspect") else 8)
    np.testing.assert_array_equal(perturb(image, name, 3, seed=(7, 2)), perturb(image, name, 3, seed=(7, 2)))


@pytest.mark.parametrize("name", FIXED)
def test_fixed_perturbations_ignore_the_seed(image, name):
    severity = get_perturbation(name).severities[-1]
    np.testing.assert_array_equal(perturb(image, name, severity, seed=0), perturb(image, name, severity, seed=99))


def test_contrast_scales_about_the_mean_with_severity(image):
    mid = 0.4 + 0.2 * image  # room on both sides: no clipping
    down = [float(o.std()) for o in at_severities(mid, "contrast_down")]
    up = [float(o.std()) for o in at_severities(mid, "contrast_up")]
    assert strictly([float(mid.std()), *down], increasing=False)
    assert strictly([float(mid.std()), *up], increasing=True)
    np.testing.assert_allclose(perturb(mid, "contrast_down", 1).mean(), mid.mean(), atol=1e-5)
    np.testing.assert_allclose(perturb(mid, "contrast_down", 1).std(), 0.85 * mid.std(), rtol=1e-4)


def test_gamma_moves_the_midtones(image):
    assert strictly([float(image.mean())] + [float(o.mean()) for o in at_severities(image, "gamma_down")], True)
    assert strictly([float(image.mean())] + [float(o.mean()) for o in at_severities(image, "gamma_up")], False)
    np.testing.assert_allclose(perturb(image, "gamma_up", 5), image ** 2.0, atol=1e-6)


def test_brightness_is_an_offset(image):
    mid = 0.3 + 0.4 * image
    for name, increasing in (("brightness_up", True), ("brightness_down", False)):
        outs = at_severities(mid, name)
        assert strictly([float(mid.mean())] + [float(o.mean()) for o in outs], increasing)
        np.testing.assert_allclose(outs[0] - mid, get_perturbation(name).parameter(1), atol=1e-6)


def test_blur_removes_more_high_frequency_energy_with_severity(image):
    energies = [highfreq_energy(image)] + [highfreq_energy(o) for o in at_severities(image, "gaussian_blur")]
    assert strictly(energies, increasing=False)


def test_sharpen_adds_high_frequency_energy_with_severity(image):
    mid = 0.3 + 0.4 * image
    energies = [highfreq_energy(mid)] + [highfreq_energy(o) for o in at_severities(mid, "sharpen")]
    assert strictly(energies, increasing=True)


def test_gaussian_noise_has_the_stated_std():
    flat = np.full((128, 128), 0.5, np.float32)
    stds = [float((o - flat).std()) for o in at_severities(flat, "gaussian_noise")]
    assert strictly(stds, increasing=True)
    for severity, std in zip(SEVERITIES, stds):
        assert std == pytest.approx(get_perturbation("gaussian_noise").parameter(severity), rel=0.05)


def test_poisson_noise_grows_with_severity_and_is_strongest_where_dense():
    flat = np.full((128, 128), 0.5, np.float32)
    stds = [float((o - flat).std()) for o in at_severities(flat, "poisson_noise")]
    assert strictly(stds, increasing=True)
    halves = np.concatenate([np.full((64, 128), 0.2, np.float32), np.full((64, 128), 0.8, np.float32)])
    noisy = perturb(halves, "poisson_noise", 3)
    assert (noisy[64:] - 0.8).std() > 2 * (noisy[:64] - 0.2).std()  # bone/mediastinum (bright) get fewer photons
    assert abs(float(noisy[:64].mean()) - 0.2) < 0.01  # no bias in the dark half


def test_jpeg_error_grows_as_quality_drops():
    image = xray(128)
    errors = [float(np.mean((o - image) ** 2)) for o in at_severities(image, "jpeg")]
    assert strictly(errors, increasing=True)


def test_downsampling_loses_more_detail_with_severity(image):
    energies = [highfreq_energy(image)] + [highfreq_energy(o) for o in at_severities(image, "downsample")]
    assert strictly(energies, increasing=False)


def test_rotation_black_corners_grow_with_the_angle():
    white = np.ones((64, 80), np.float32)
    black_share = [float((o < 0.5).mean()) for o in at_severities(white, "rotation")]
    assert black_share[0] > 0
    assert strictly(black_share, increasing=True)


def test_crop_zooms_in_by_the_stated_share():
    ramp = np.tile(np.linspace(0, 1, 100, dtype=np.float32), (80, 1))
    spans = []
    for severity, out in zip(SEVERITIES, at_severities(ramp, "crop")):
        span = float(out[40].max() - out[40].min())
        assert span == pytest.approx(get_perturbation("crop").parameter(severity), abs=0.02)
        spans.append(span)
    assert strictly(spans, increasing=False)


def test_zoom_out_shrinks_the_content_into_a_black_frame():
    white = np.ones((80, 100), np.float32)
    shares = []
    for severity, out in zip(SEVERITIES, at_severities(white, "zoom_out")):
        keep = get_perturbation("zoom_out").parameter(severity)
        shares.append(float((out > 0.5).mean()))
        assert shares[-1] == pytest.approx(keep * keep, abs=0.03)
        assert out[40, 50] == 1.0 and out[0, 0] == 0.0  # centred
    assert strictly(shares, increasing=False)


def test_shift_moves_the_content_by_the_stated_share():
    dot = np.zeros((100, 100), np.float32)
    dot[45:55, 45:55] = 1.0
    for severity, out in zip(SEVERITIES, at_severities(dot, "shift", seed=5)):
        rows, cols = np.nonzero(out > 0.5)
        moved = np.hypot(rows.mean() - 49.5, cols.mean() - 49.5) / 100
        assert moved == pytest.approx(get_perturbation("shift").parameter(severity), abs=0.015)
        assert out.sum() == pytest.approx(dot.sum())  # moved, not rescaled


def test_aspect_stretches_one_side_only():
    ramp = np.tile(np.linspace(0, 1, 100, dtype=np.float32), (80, 1))
    for seed in range(6):
        out = perturb(ramp, "aspect", 5, seed=seed)
        keep = get_perturbation("aspect").parameter(5)
        span = float(out[40].max() - out[40].min())
        # the horizontal ramp loses its ends when the width is cropped, and is unchanged when the height is
        assert span == pytest.approx(keep, abs=0.02) or np.allclose(out, ramp, atol=1e-5)
    assert len({perturb(ramp, "aspect", 5, seed=s).tobytes() for s in range(12)}) == 2


def test_every_perturbation_has_a_kind_and_kinds_list_them():
    from pneumoscope.robustness.perturbations import KINDS

    assert {get_perturbation(n).kind for n in list_perturbations()} == set(KINDS)
    assert sum(len(list_perturbations(kind)) for kind in KINDS) == len(list_perturbations())
    assert {"rotation", "crop", "zoom_out", "shift", "aspect"} == set(list_perturbations("framing"))
    assert {"gaussian_blur", "sharpen", "downsample"} == set(list_perturbations("sharpness"))
    with pytest.raises(ConfigError, match="unknown perturbation kind"):
        list_perturbations("fog")


def test_inversion_is_exact(image):
    out = perturb(image, "invert", 1)
    np.testing.assert_array_equal(out, (1.0 - image).astype(np.float32))
    np.testing.assert_allclose(perturb(out, "invert", 1), image, atol=1e-7)


def sinusoid_gain(size: int, name: str, severity: int, period_reference_px: float = 8.0) -> float:
    """Amplitude gain that a perturbation applies to a vertical-stripe sinusoid of a fixed period in reference px."""
    xx = np.tile(np.arange(size, dtype=np.float64), (size, 1))
    wave = np.sin(2 * np.pi * xx / (period_reference_px * size / REFERENCE_SIZE))
    out = perturb((0.5 + 0.2 * wave).astype(np.float32), name, severity).astype(np.float64)
    return float(((out - out.mean()) * wave).sum() / (wave * wave).sum() / 0.2)


@pytest.mark.parametrize("name", ["gaussian_blur", "downsample", "sharpen"])
def test_spatial_severities_mean_the_same_at_any_stored_resolution(name):
    """Blur / resampling sizes are in reference (224-px) pixels: the same detail is affected the same way at 448 px."""
    for severity in (1, 3, 5):
        at_reference = sinusoid_gain(REFERENCE_SIZE, name, severity)
        assert abs(at_reference - 1.0) > 0.05  # the perturbation does act on this detail
        assert sinusoid_gain(2 * REFERENCE_SIZE, name, severity) == pytest.approx(at_reference, abs=0.02)


def test_bad_names_severities_images_and_seeds_are_user_errors(image):
    with pytest.raises(ConfigError, match="unknown perturbation 'fog'"):
        perturb(image, "fog", 1)
    for severity in (0, 6):
        with pytest.raises(ConfigError, match="no severity"):
            perturb(image, "jpeg", severity)
    with pytest.raises(ConfigError, match="no severity 2"):
        perturb(image, "invert", 2)
    with pytest.raises(DataError, match=r"grayscale \(H, W\)"):
        perturb(np.zeros((8, 8, 3), np.float32), "jpeg", 1)
    with pytest.raises(ConfigError, match="negative"):
        perturb(image, "gaussian_noise", 1, seed=-1)


def test_out_of_range_input_is_clipped_first():
    wild = np.array([[-0.5, 0.2], [0.8, 1.7]], np.float32)
    np.testing.assert_allclose(perturb(wild, "invert", 1), [[1.0, 0.8], [0.2, 0.0]], atol=1e-6)


def test_describe_lists_every_severity_with_its_parameter():
    rows = describe_perturbations()
    assert len(rows) == len(ALL_CASES)
    for row in rows:
        assert row["parameter"] == get_perturbation(row["perturbation"]).parameter(row["severity"])
        assert row["unit"] and row["description"]
