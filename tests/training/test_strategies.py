"""Strategies: two-stage freezes the backbone (weights and norm statistics unchanged) then trains all layers;
unfreeze_last trains only the head and the last blocks."""

from __future__ import annotations

import lightning as L
import torch

from pneumoscope.training.run import build_model, train
from pneumoscope.training.strategies import stage_of_epoch, stages


def _snapshot(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _ids(params) -> set[int]:
    return {id(p) for p in params}


def test_stage_plan_of_two_stage_config(tiny_config):
    config = tiny_config(strategy={"kind": "two_stage", "stage1_epochs": 2}, trainer={"epochs": 5})
    plan = stages(config)
    assert [(s.number, s.first_epoch, s.end_epoch, s.lr) for s in plan] == [(1, 0, 2, 1e-3), (2, 2, 5, 1e-5)]
    assert stage_of_epoch(config, 1).number == 1 and stage_of_epoch(config, 2).number == 2


def test_two_stage_freezes_then_unfreezes(tiny_config, tmp_path):
    config = tiny_config(strategy={"kind": "two_stage", "stage1_epochs": 1}, trainer={"epochs": 2})
    L.seed_everything(config.seed, verbose=False)
    initial = build_model(config)  # train() builds the same initial weights from the same seed
    start = _snapshot(initial)
    seen: list[dict] = []

    def inspect(row, trainer):
        model = trainer.lightning_module.model
        head = _ids(model.head_parameters())
        backbone = list(model.backbone_parameters())
        seen.append({
            "stage": row["stage"],
            "lr": row["lr"],
            "backbone_trainable": [p.requires_grad for p in backbone],
            "head_trainable": [p.requires_grad for p in model.parameters() if id(p) in head],
            "state": _snapshot(model),
            "backbone_names": {n for n, p in model.named_parameters() if id(p) not in head},
            "head_names": {n for n, p in model.named_parameters() if id(p) in head},
        })

    train(config, tmp_path / "run", progress=False, on_epoch=inspect)
    first, second = seen
    assert first["stage"] == 1 and second["stage"] == 2
    assert first["lr"] == 1e-3 and second["lr"] == 1e-5
    assert not any(first["backbone_trainable"]) and all(first["head_trainable"])
    assert all(second["backbone_trainable"]) and all(second["head_trainable"])
    # stage 1 changed the head only: every backbone tensor, norm statistics included, is as initialised
    for name in first["backbone_names"]:
        assert torch.equal(first["state"][name], start[name]), name
    norm_stats = [k for k in start if k.endswith(("running_mean", "running_var"))]
    for name in norm_stats:
        assert torch.equal(first["state"][name], start[name]), name
    assert any(not torch.equal(first["state"][n], start[n]) for n in first["head_names"])
    # stage 2 trained the backbone too
    assert any(not torch.equal(second["state"][n], first["state"][n]) for n in first["backbone_names"])


def test_unfreeze_last_trains_only_head_and_last_blocks(tiny_config, tmp_path):
    config = tiny_config(strategy={"kind": "unfreeze_last", "unfreeze_last": 1}, trainer={"epochs": 1})
    L.seed_everything(config.seed, verbose=False)
    reference = build_model(config)
    start = _snapshot(reference)
    reference.freeze_backbone()
    reference.unfreeze_last(1)
    expected_trainable = {n for n, p in reference.named_parameters() if p.requires_grad}
    head = {n for n, p in reference.named_parameters() if id(p) in _ids(reference.head_parameters())}
    assert head < expected_trainable < {n for n, _ in reference.named_parameters()}
    seen = {}

    def inspect(row, trainer):
        model = trainer.lightning_module.model
        seen["trainable"] = {n for n, p in model.named_parameters() if p.requires_grad}
        seen["state"] = _snapshot(model)

    train(config, tmp_path / "run", progress=False, on_epoch=inspect)
    assert seen["trainable"] == expected_trainable
    frozen = {n for n, _ in reference.named_parameters()} - expected_trainable
    for name in frozen:
        assert torch.equal(seen["state"][name], start[name]), name
    assert any(not torch.equal(seen["state"][n], start[n]) for n in expected_trainable)
