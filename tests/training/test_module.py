"""Loss, accuracy and optimizer choices of the training module."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pneumoscope.training.config import resolve_config
from pneumoscope.training.module import (
    build_optimizer,
    classification_loss,
    classification_loss_per_sample,
    predicted_class,
    to_float_batch,
)


def test_weighted_cross_entropy_and_label_smoothing():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.2], [-1.0, 1.5]])
    target = torch.tensor([0, 1, 1])
    weights = torch.tensor([3.0, 1.0])
    assert torch.isclose(classification_loss(logits, target), F.cross_entropy(logits, target))
    weighted = classification_loss(logits, target, weights)
    assert torch.isclose(weighted, F.cross_entropy(logits, target, weight=weights))
    assert not torch.isclose(weighted, classification_loss(logits, target))
    assert classification_loss(logits, target, label_smoothing=0.2) > classification_loss(logits, target)


def test_single_logit_binary_uses_bce_with_positive_weight():
    logits = torch.tensor([[1.0], [-2.0], [0.3]])
    target = torch.tensor([1, 0, 0])
    plain = classification_loss(logits, target)
    assert torch.isclose(plain, F.binary_cross_entropy_with_logits(logits[:, 0], target.float()))
    weighted = classification_loss(logits, target, torch.tensor([1.0, 4.0]))
    expected = F.binary_cross_entropy_with_logits(logits[:, 0], target.float(), pos_weight=torch.tensor([4.0]))
    assert torch.isclose(weighted, expected)
    assert predicted_class(logits).tolist() == [1, 0, 1]
    assert classification_loss_per_sample(logits, target).shape == (3,)


def test_uint8_batches_become_unit_floats():
    images = torch.tensor([[[[0, 128, 255]]]], dtype=torch.uint8)
    out = to_float_batch(images)
    assert out.dtype == torch.float32 and out.min() == 0 and out.max() == 1


@pytest.mark.parametrize("name, cls", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                       ("adamw", torch.optim.AdamW), ("adagrad", torch.optim.Adagrad)])
def test_optimizers(name, cls):
    config = resolve_config(overrides={"optim": {"optimizer": name, "momentum": 0.8}})
    params = [torch.nn.Parameter(torch.zeros(2))]
    optimizer = build_optimizer(name, params, 0.01, config)
    assert isinstance(optimizer, cls) and optimizer.param_groups[0]["lr"] == 0.01
    if name == "sgd":
        assert optimizer.param_groups[0]["momentum"] == 0.8
