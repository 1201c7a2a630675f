"""Options the published set-ups need: skew / grid distortion, a separate copy augmentation for oversampling,
the optimizer's epsilon, and head-only transfer (``unfreeze_last: 0``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pneumoscope.errors import ConfigError
from pneumoscope.training.augment import BatchAugment, augment_seeded, grid_distortion
from pneumoscope.training.config import AugmentConfig, resolve_config
from pneumoscope.training.module import build_optimizer


def _batch(make_xray, n: int = 4, size: int = 48) -> torch.Tensor:
    return torch.stack([torch.from_numpy(make_xray(size, seed=i)) for i in range(n)])[:, None].float() / 255.0


def test_grid_distortion_warps_smoothly_and_keeps_borders(make_xray):
    x = _batch(make_xray)
    torch.manual_seed(0)
    y = grid_distortion(x, magnitude=0.05, cells=4, p=1.0)
    assert y.shape == x.shape and float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert float((y - x).abs().mean()) > 0.005  # the content moved
    # border grid points stay: the corner pixels are where they were
    assert torch.allclose(y[..., 0, 0], x[..., 0, 0], atol=1e-4)
    assert torch.equal(grid_distortion(x, magnitude=0.05, cells=4, p=0.0), x)


def test_skew_and_distortion_levers_are_repeatable_and_not_identity(make_xray):
    x = _batch(make_xray)
    for config in (AugmentConfig(skew=0.3, skew_p=1.0), AugmentConfig(distortion=0.05, distortion_p=1.0)):
        augment = BatchAugment(config, 48)
        assert not augment.is_identity
        out = augment_seeded(augment, x, 3)
        assert torch.equal(out, augment_seeded(augment, x, 3))
        assert not torch.equal(out, x)
    assert BatchAugment(AugmentConfig(distortion=0.05, distortion_p=0.0), 48).is_identity


def test_optimizer_epsilon_is_passed_on():
    params = [torch.nn.Parameter(torch.zeros(2))]
    for name in ("adam", "adamw", "adagrad"):
        config = resolve_config(overrides={"optim": {"optimizer": name, "eps": 0.1}})
        assert build_optimizer(name, params, 1e-3, config).defaults["eps"] == 0.1
    default = build_optimizer("adam", params, 1e-3, resolve_config())
    assert default.defaults["eps"] == pytest.approx(1e-8)
    with pytest.raises(ConfigError, match="optim.eps"):
        resolve_config(overrides={"optim": {"eps": 0}})


def test_head_only_transfer_freezes_the_whole_backbone(tiny_config):
    from pneumoscope.training.run import build_model
    from pneumoscope.training.strategies import apply_stage, stages

    config = tiny_config(strategy={"kind": "unfreeze_last", "unfreeze_last": 0})
    model = build_model(config)
    apply_stage(model, config, stages(config)[0])
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in model.head_parameters()}
    with pytest.raises(ConfigError, match="unfreeze_last"):
        tiny_config(strategy={"kind": "unfreeze_last", "unfreeze_last": -1})


def test_copies_use_the_balance_augmentation_not_the_online_one(tiny_config, tmp_path):
    """In a run, ``balance.augment`` makes the oversampling copies; the online augmentation stays what ``augment`` says."""
    from pneumoscope.training.run import train

    config = tiny_config(augment={"enabled": False}, balance={"method": "oversample", "augment": {"hflip": True}},
                         trainer={"epochs": 1})
    seen = {}

    def inspect(row, trainer):
        data = trainer.datamodule
        seen["images"], seen["labels"] = data.train_arrays()
        seen["originals"] = np.asarray(data.images[data.train_index])
        seen["online"] = trainer.lightning_module.augment

    train(config, tmp_path / "run", progress=False, on_epoch=inspect)
    assert seen["online"] is None  # online augmentation disabled
    originals, labels = seen["originals"], seen["labels"]
    copies = seen["images"][len(originals):]
    counts = np.bincount(labels, minlength=2)
    assert len(copies) > 0 and counts[0] == counts[1]
    # every copy is an original or its mirror image (nothing else: the copy augmentation is the flip alone)
    pool = {o.tobytes() for o in originals}
    mirrored = [np.ascontiguousarray(c[:, ::-1]).tobytes() in pool for c in copies]
    assert all(c.tobytes() in pool or m for c, m in zip(copies, mirrored, strict=True))
    assert any(mirrored)
