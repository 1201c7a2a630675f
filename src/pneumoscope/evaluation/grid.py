"""Experiment grids: a YAML file naming a base training config and axes whose cartesian product are the runs.

```yaml
name: exp3-binary-transfer          # output folder name under --out (default runs/)
description: free text
paper: {claim: "ResNeXt50 + AdaGrad 95.51 % accuracy", reference: "..."}   # optional
base:                               # a partial training config (same sections as `pneumoscope train --config`)
  task: binary
  preset: plain
grid:                               # axes; cells = cartesian product; each value is a partial config
  model:                            # deep-merged over base, in axis order
    vgg16: {model: {name: vgg16}}
  optimizer:
    sgd: {optim: {optimizer: sgd, lr: 0.01}}
cv: {folds: 5}                      # optional: each cell is a k-fold cross-validation instead of one split
```

A cell's folder is ``OUT/<name>/<axis values joined by "__">/`` (a run folder, or a cv folder with ``cv``); it
holds ``cell.json`` (its axis values). ``run_grid`` skips finished cells, resumes interrupted ones and refuses a
cell folder that holds a run of another config.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pneumoscope.errors import ConfigError, PneumoscopeError
from pneumoscope.files import atomic_write_text, remove_temporaries
from pneumoscope.training.config import TrainConfig, deep_merge, parse_override

GRID_KEYS = ("name", "description", "paper", "base", "grid", "cv")
FAILED_FILE = "failed.json"
CELL_FILE = "cell.json"
SEPARATOR = "__"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@dataclass(frozen=True)
class Cell:
    """One run of the grid: its axis values (axis → value name) and its partial config (before overrides)."""

    values: dict[str, str]
    config: dict[str, Any]

    @property
    def key(self) -> str:
        """The cell's folder name: the value names joined by ``__`` in axis order."""
        return SEPARATOR.join(self.values.values())


@dataclass
class Grid:
    """A parsed grid file."""

    name: str
    source: Path
    base: dict[str, Any]
    axes: list[tuple[str, dict[str, dict[str, Any]]]]
    description: str = ""
    paper: dict[str, Any] = field(default_factory=dict)
    cv_folds: int | None = None

    def cells(self) -> list[Cell]:
        """Every cell, in axis order (the last axis varies fastest)."""
        names = [axis for axis, _ in self.axes]
        cells = []
        for combination in itertools.product(*(list(values.items()) for _, values in self.axes)):
            config = dict(self.base)
            for _, partial in combination:
                config = deep_merge(config, partial)
            cells.append(Cell(values=dict(zip(names, (value for value, _ in combination))), config=config))
        return cells

    def folder(self, out_root: str | Path) -> Path:
        return Path(out_root) / self.name


def is_grid_file(path: str | Path) -> bool:
    """True for an existing ``.yaml`` / ``.yml`` file (a grid; run folders are directories)."""
    path = Path(path)
    return path.is_file() and path.suffix.lower() in (".yaml", ".yml")


def read_grid(path: str | Path) -> Grid:
    """Parse and check a grid file (ConfigError naming the file and the key)."""
    from pneumoscope.training.config import read_yaml

    path = Path(path)
    data = read_yaml(path)
    unknown = sorted(set(data) - set(GRID_KEYS))
    if unknown:
        raise ConfigError(f"unknown grid key(s) {unknown}.", path=path, fix=f"use: {', '.join(GRID_KEYS)}.")
    name = data.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"grid 'name' {name!r} must be a folder name (letters, digits, _ . + -).", path=path,
                          fix="e.g. name: exp3-binary-transfer")
    base = data.get("base") or {}
    if not isinstance(base, dict):
        raise ConfigError("grid 'base' must be a mapping (a partial training config).", path=path,
                          fix="e.g. base: {task: binary, trainer: {epochs: 20}}")
    return Grid(name=name, source=path, base=base, axes=_axes(data.get("grid"), path),
                description=str(data.get("description") or ""), paper=_paper(data.get("paper"), path),
                cv_folds=_cv_folds(data.get("cv"), path))


def _axes(grid: Any, path: Path) -> list[tuple[str, dict[str, dict[str, Any]]]]:
    if not isinstance(grid, dict) or not grid:
        raise ConfigError("grid 'grid' must map axis names to {value name: partial config}.", path=path,
                          fix="e.g. grid: {model: {vgg16: {model: {name: vgg16}}}}")
    axes = []
    for axis, values in grid.items():
        if not isinstance(values, dict) or not values:
            raise ConfigError(f"grid axis {axis!r} must map value names to partial configs.", path=path,
                              fix=f"e.g. {axis}: {{name: {{section: {{key: value}}}}}}")
        for value, partial in values.items():
            if not _NAME.match(str(value)) or SEPARATOR in str(value):
                raise ConfigError(f"grid value name {value!r} (axis {axis!r}) must be a folder name without "
                                  f"'{SEPARATOR}'.", path=path, fix="use letters, digits, _ . + -")
            if not isinstance(partial, dict):
                raise ConfigError(f"grid value {axis}.{value} must be a partial config (a mapping).", path=path,
                                  fix=f"e.g. {value}: {{model: {{name: {value}}}}}")
        axes.append((str(axis), {str(k): v for k, v in values.items()}))
    return axes


def _paper(paper: Any, path: Path) -> dict[str, Any]:
    if paper is None:
        return {}
    if not isinstance(paper, dict):
        raise ConfigError("grid 'paper' must be a mapping (claim, reference).", path=path,
                          fix='e.g. paper: {claim: "95.5 % accuracy", reference: "..."}')
    return paper


def _cv_folds(cv: Any, path: Path) -> int | None:
    if cv is None:
        return None
    folds = cv.get("folds") if isinstance(cv, dict) else None
    if not isinstance(folds, int) or isinstance(folds, bool) or folds < 2 or set(cv) - {"folds"}:
        raise ConfigError(f"grid 'cv' must be {{folds: K}} with K >= 2, got {cv!r}.", path=path,
                          fix="e.g. cv: {folds: 5}")
    return folds


def cell_config(grid: Grid, cell: Cell, data: Sequence[str | Path] | None = None,
                settings: Sequence[str] = ()) -> TrainConfig:
    """The resolved config of ``cell`` with the CLI's ``--data`` and ``--set`` applied (they win)."""
    from pneumoscope.training.config import resolve_config

    values = dict(cell.config)
    if data:
        values = deep_merge(values, {"data": {"paths": [str(p) for p in data]}})
    for setting in settings:
        values = deep_merge(values, parse_override(setting))
    try:
        return resolve_config(overrides=values)
    except ConfigError as error:
        raise ConfigError(f"cell {cell.key}: {error.message}", path=grid.source, fix=error.fix) from None


def cell_finished(folder: Path, cv: bool) -> bool:
    from pneumoscope.evaluation.cv import is_finished as cv_finished
    from pneumoscope.training.resume import is_finished as run_finished

    return cv_finished(folder) if cv else run_finished(folder)


def run_grid(grid: Grid, out_root: str | Path = "runs", data: Sequence[str | Path] | None = None,
             settings: Sequence[str] = (), progress: bool = True, on_epoch: Callable | None = None) -> list[Path]:
    """Run every cell not finished yet (see the module docstring); returns the cell folders in grid order."""
    from pneumoscope.progress import status_line

    root = grid.folder(out_root)
    root.mkdir(parents=True, exist_ok=True)
    remove_temporaries(root)  # what a killed earlier attempt was writing (cell folders: train cleans them)
    atomic_write_text(root / "grid.yaml", grid.source.read_text(encoding="utf-8"))
    cells = grid.cells()
    configs = [cell_config(grid, cell, data, settings) for cell in cells]  # every cell checked before any trains
    folders = []
    for i, (cell, config) in enumerate(zip(cells, configs), start=1):
        folder = root / cell.key
        folders.append(folder)
        check_cell_config(config, folder)
        if cell_finished(folder, grid.cv_folds is not None):
            status_line(f"cell {i} of {len(cells)} ({cell.key}): finished, skipped")
            continue
        status_line(f"cell {i} of {len(cells)}: {cell.key}")
        (folder / FAILED_FILE).unlink(missing_ok=True)
        try:
            run_cell(grid, cell, config, folder, progress, on_epoch)
        except PneumoscopeError as error:  # e.g. ImageNet weights not available offline: the other cells still run
            failure = {"cell": cell.key, "error": str(error)}
            atomic_write_text(folder / FAILED_FILE, json.dumps(failure, indent=2) + "\n")
            status_line(f"cell {i} of {len(cells)} ({cell.key}) failed: {error}")
    return folders


def cell_failure(folder: str | Path) -> str | None:
    """Why the last attempt at this cell failed (a user error such as missing weights), or None."""
    path = Path(folder) / FAILED_FILE
    return json.loads(path.read_text(encoding="utf-8"))["error"] if path.is_file() else None


def run_cell(grid: Grid, cell: Cell, config: TrainConfig, folder: Path, progress: bool,
             on_epoch: Callable | None) -> None:
    """Train one cell (cv, resume or fresh run) and record its axis values in ``cell.json``."""
    from pneumoscope.evaluation.cv import cross_validate
    from pneumoscope.training.resume import last_checkpoint, resume
    from pneumoscope.training.run import train

    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / CELL_FILE,
                      json.dumps({"grid": grid.name, "cell": cell.key, "values": cell.values}, indent=2) + "\n")
    if grid.cv_folds is not None:
        cross_validate(config, grid.cv_folds, folder, progress=progress, on_epoch=on_epoch)
        return
    if last_checkpoint(folder) is not None:
        resume(folder, progress=progress, on_epoch=on_epoch)
        return
    train(config, folder, progress=progress, on_epoch=on_epoch)


def check_cell_config(config: TrainConfig, folder: Path) -> None:
    """Refuse a cell folder whose saved config differs from the cell's (the grid or ``--set`` changed)."""
    from pneumoscope.evaluation.cv import same_config
    from pneumoscope.training.config import read_yaml

    saved = folder / "config.yaml"
    if saved.is_file() and not same_config(read_yaml(saved), config):
        raise ConfigError("this cell folder holds a run of another config (the grid, --data or --set changed).",
                          path=folder, fix="use another --out, or delete the folder to run the cell again.")


def read_cell(folder: str | Path) -> dict[str, Any] | None:
    """A cell folder's ``cell.json`` (None outside a grid)."""
    path = Path(folder) / CELL_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
