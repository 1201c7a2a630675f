"""Class balancing: loss weights, sampler counts and minority oversampling with augmented copies."""

from __future__ import annotations

import numpy as np

from pneumoscope.training.augment import BatchAugment
from pneumoscope.training.balance import (
    class_counts,
    class_weights,
    oversample_minority,
    oversample_plan,
    sample_weights,
    weighted_sampler,
)
from pneumoscope.training.config import AugmentConfig
from pneumoscope.training.datamodule import EpochWeightedSampler

LABELS = np.array([0] * 10 + [1] * 30 + [2] * 60)


def test_class_weights_equalise_class_contributions():
    weights = class_weights(LABELS, 3)
    counts = class_counts(LABELS, 3)
    contribution = weights.numpy() * counts
    assert np.allclose(contribution, contribution[0])
    assert weights[0] > weights[1] > weights[2]
    assert np.isclose(float((weights.numpy() * counts).sum()), len(LABELS))


def test_weighted_sampler_draws_classes_about_equally():
    sampler = weighted_sampler(LABELS, 3, seed=0)
    drawn = LABELS[list(sampler)]
    assert len(drawn) == len(LABELS)
    big = np.tile(LABELS, 100)
    drawn = big[list(EpochWeightedSampler(sample_weights(big, 3), seed=1))]
    shares = class_counts(drawn, 3) / len(drawn)
    assert np.allclose(shares, 1 / 3, atol=0.03)


def test_epoch_sampler_is_repeatable_per_epoch():
    sampler = EpochWeightedSampler(sample_weights(LABELS, 3), seed=4)
    sampler.set_epoch(2)
    a = list(sampler)
    sampler.set_epoch(3)
    b = list(sampler)
    sampler.set_epoch(2)
    assert list(sampler) == a and a != b


def test_oversample_plan_reaches_target_counts():
    plan = oversample_plan(LABELS, 3, target_count=None, seed=0)
    total = class_counts(LABELS, 3) + class_counts(LABELS[plan], 3)
    assert total.tolist() == [60, 60, 60]
    # copies spread over the class's images: each normal image is copied 5 times to go from 10 to 60
    assert np.bincount(plan[LABELS[plan] == 0], minlength=10).tolist() == [5] * 10
    plan = oversample_plan(LABELS, 3, target_count=45, seed=0)
    assert (class_counts(LABELS, 3) + class_counts(LABELS[plan], 3)).tolist() == [45, 45, 60]


def test_oversampled_copies_are_augmented_and_repeatable(make_xray):
    images = np.stack([make_xray(32, seed=i) for i in range(len(LABELS))])
    augment = BatchAugment(AugmentConfig(rotation=10, brightness=0.2, photometric_p=1.0), 32)
    copies, labels = oversample_minority(images, LABELS, 3, augment, seed=7)
    again, _ = oversample_minority(images, LABELS, 3, augment, seed=7)
    assert copies.dtype == np.uint8 and copies.shape == (len(labels), 32, 32)
    assert class_counts(labels, 3).tolist() == [50, 30, 0]
    assert np.array_equal(copies, again)
    plan = oversample_plan(LABELS, 3, None, seed=7)
    assert not np.array_equal(copies, images[plan])  # augmented, not plain duplicates
