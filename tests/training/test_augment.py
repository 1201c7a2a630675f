"""Batched augmentation: shape and range kept, repeatable per seed, each lever does what it says."""

from __future__ import annotations

import pytest
import torch

from pneumoscope.training.augment import (
    BatchAugment,
    add_noise,
    adjust_contrast,
    adjust_gamma,
    augment_seeded,
    resolution_jitter,
    unsharp_mask,
)
from pneumoscope.training.config import AugmentConfig, resolve_config


def batch(make_xray, n: int = 6, size: int = 48) -> torch.Tensor:
    images = [torch.from_numpy(make_xray(size, seed=i, pneumonia=i % 2 == 1)) for i in range(n)]
    return torch.stack(images)[:, None].float() / 255.0


@pytest.mark.parametrize("preset", ["plain", "recommended", "strong"])
def test_preset_augmentation_keeps_shape_range_and_dtype(make_xray, preset):
    config = resolve_config(preset=preset)
    augment = BatchAugment(config.augment, 48)
    x = batch(make_xray)
    y = augment_seeded(augment, x, seed=3)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert not torch.equal(y, x)


@pytest.mark.parametrize("preset", ["plain", "recommended", "strong"])
def test_augmentation_is_repeatable_per_seed(make_xray, preset):
    augment = BatchAugment(resolve_config(preset=preset).augment, 48)
    x = batch(make_xray)
    assert torch.equal(augment_seeded(augment, x, 11), augment_seeded(augment, x, 11))
    assert not torch.equal(augment_seeded(augment, x, 11), augment_seeded(augment, x, 12))
    torch.manual_seed(5)
    first = augment(x)
    torch.manual_seed(5)
    assert torch.equal(first, augment(x))


def test_disabled_or_empty_augmentation_is_identity(make_xray):
    x = batch(make_xray)
    off = BatchAugment(AugmentConfig(enabled=False, rotation=10), 48)
    nothing = BatchAugment(AugmentConfig(), 48)
    assert off.is_identity and nothing.is_identity
    assert off(x) is x and nothing(x) is x


def test_no_flips_by_default_and_flip_option(make_xray):
    x = batch(make_xray)
    assert BatchAugment(AugmentConfig(photometric_p=0.0), 48).is_identity
    flip = BatchAugment(AugmentConfig(hflip=True), 48)
    torch.manual_seed(0)
    out = flip(x)
    flipped = [torch.equal(out[i], x[i].flip(-1)) for i in range(len(x))]
    kept = [torch.equal(out[i], x[i]) for i in range(len(x))]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped)


def test_gamma_contrast_noise_and_resolution_levers():
    torch.manual_seed(0)
    x = torch.rand(8, 1, 32, 32)
    # gamma with p=1 and gamma > 1 darkens every image; p=0 leaves it alone
    assert bool((adjust_gamma(x, 1.4, 1.5, p=1.0).mean(dim=(1, 2, 3)) < x.mean(dim=(1, 2, 3))).all())
    assert torch.equal(adjust_gamma(x, 1.4, 1.5, p=0.0), x)
    # contrast keeps each image's mean and changes its spread
    c = adjust_contrast(x, 0.3, p=1.0)
    assert torch.allclose(c.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)), atol=1e-5)
    assert not torch.allclose(c.std(dim=(1, 2, 3)), x.std(dim=(1, 2, 3)))
    assert not torch.equal(add_noise(x, 0.05, p=1.0), x)
    # down-/up-sampling removes fine detail: a checkerboard loses most of its contrast
    board = ((torch.arange(32)[:, None] + torch.arange(32)[None, :]) % 2).float().expand(4, 1, 32, 32)
    low = resolution_jitter(board, 0.5, 0.5, p=1.0)
    assert low.shape == board.shape and float(low.std()) < 0.25 * float(board.std())


def test_crop_and_rotation_move_content(make_xray):
    x = batch(make_xray)
    geometric = BatchAugment(AugmentConfig(rotation=15, crop_scale=(0.6, 0.8), photometric_p=0.0), 48)
    y = augment_seeded(geometric, x, 1)
    assert y.shape == x.shape
    assert float((y - x).abs().mean()) > 0.01


def test_unsharp_mask_raises_edge_contrast_and_keeps_flat_regions():
    step = torch.zeros(3, 1, 32, 32)
    step[..., 16:] = 0.6
    step += 0.2
    sharpened = unsharp_mask(step, 1.0, 1.0, sigma=2.0, p=1.0)
    # overshoot on both sides of the edge, flat far from it
    assert float(sharpened[..., 15].max()) < 0.2 - 0.05 and float(sharpened[..., 16].min()) > 0.8 + 0.05
    assert torch.allclose(sharpened[..., :4], step[..., :4], atol=1e-4)
    assert torch.equal(unsharp_mask(step, 1.0, 1.0, sigma=2.0, p=0.0), step)


@pytest.mark.parametrize("name", ["framing", "sharpness", "invariant"])
def test_study_candidate_recipes_load_and_augment(make_xray, name):
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "experiments" / "generalisation" / f"{name}.yaml"
    config = resolve_config(path)
    augment = BatchAugment(config.augment, 48)
    x = batch(make_xray)
    y = augment_seeded(augment, x, seed=1)
    assert not augment.is_identity and y.shape == x.shape
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
