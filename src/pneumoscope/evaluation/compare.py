"""``compare``: one table like the research's Table II over several runs (per model and strategy: accuracy and
per-class precision / sensitivity / F1), with 95 % bootstrap CIs (single runs) or ± std (cross-validated cells).

Each run contributes one row per evaluation: its validation split (``eval-val``, scored here when missing) and any
other ``eval-*`` folder. A cv folder contributes one row: the mean ± std over its held-out folds. Given a grid file,
the grid is run first (``evaluation.grid``, resumable). Writes ``comparison.csv`` (numbers, full precision),
``comparison.md`` and ``comparison.html``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from pneumoscope.errors import DataError, ModelError
from pneumoscope.evaluation.grid import Grid, cell_failure, is_grid_file, read_cell, read_grid, run_grid
from pneumoscope.files import atomic_write_text
from pneumoscope.metrics.bootstrap import PER_CLASS_CI_METRICS

COMPARISON = "comparison"


def compare(targets: Sequence[str | Path], out: str | Path | None = None, data: Sequence[str | Path] | None = None,
            settings: Sequence[str] = (), progress: bool = True) -> dict[str, Path]:
    """Compare run / cv folders, or run a grid file and compare its cells; returns the files written.

    ``out``: the comparison folder for run folders (default ``runs/compare-<time>``); for a grid, the root under
    which ``<name>/`` is made (default ``runs``). ``data`` / ``settings`` apply to every grid cell.
    """
    targets = [Path(t) for t in targets]
    if not targets:
        raise DataError("nothing to compare.", fix="pass run folders, cv folders or one grid YAML file.")
    grid = None
    if len(targets) == 1 and is_grid_file(targets[0]):
        grid = read_grid(targets[0])
        folders = run_grid(grid, out or "runs", data, settings, progress)
        out_dir = grid.folder(out or "runs")
    else:
        if any(is_grid_file(t) for t in targets):
            raise DataError("a grid file is compared on its own, not together with run folders.",
                            fix="pass one grid YAML file, or only run folders.")
        if data or settings:
            raise DataError("--data and --set apply to a grid's runs; these run folders are already trained.",
                            fix="drop --data / --set, or pass a grid YAML file.")
        folders = targets
        out_dir = Path(out) if out else Path("runs") / f"compare-{datetime.now():%Y%m%d-%H%M%S}"
    failed = {folder.name: why for folder in folders if grid and (why := cell_failure(folder))}
    entries = [entry for folder in folders if folder.name not in failed for entry in folder_entries(folder, progress)]
    written = write_comparison(comparison_table(entries), out_dir, grid) if entries else {}
    if failed:
        where = f" The comparison of the other cells is in {written['md']}." if written else ""
        raise ModelError(f"{len(failed)} of {len(folders)} grid cells failed: "
                         + "; ".join(f"{key}: {why}" for key, why in failed.items()) + where,
                         fix="fix what each failed cell names (e.g. provide the weights) and run the grid again: "
                             "finished cells are skipped.")
    return written


def folder_entries(folder: Path, progress: bool = True) -> list[dict[str, Any]]:
    """The table rows one folder contributes (see the module docstring)."""
    from pneumoscope.evaluation.cv import is_finished as cv_finished
    from pneumoscope.evaluation.cv import read_fold_metrics
    from pneumoscope.training.config import read_yaml
    from pneumoscope.training.resume import is_finished as run_finished

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError("folder not found.", path=folder, fix="pass run folders written by `pneumoscope train`.")
    config = read_yaml(folder / "config.yaml") if (folder / "config.yaml").is_file() else {}
    model, strategy = labels(folder, config)
    if cv_finished(folder):
        folds = read_fold_metrics(folder)
        return [{"model": model, "strategy": strategy, "evaluated_on": f"{len(folds)}-fold cv (held-out folds)",
                 "metrics": folds, "headline": None, "folder": str(folder)}]
    if not run_finished(folder):
        raise DataError("not a finished run or cross-validation folder (no summary.json / cv_summary.json).",
                        path=folder, fix="finish it (`pneumoscope train --resume`, or re-run the grid) or leave it "
                                         "out.")
    return [{"model": model, "strategy": strategy, "evaluated_on": evaluated_on(m), "metrics": m["metrics"],
             "headline": m["headline"], "folder": str(folder)} for m in run_evaluations(folder, progress)]


def labels(folder: Path, config: dict[str, Any]) -> tuple[str, str]:
    """(model, strategy) of a folder: a grid cell's ``model`` axis value and its other axis values; else the
    architecture and the folder name."""
    cell = read_cell(folder)
    architecture = str((config.get("model") or {}).get("name") or folder.name)
    if cell is None:
        return architecture, folder.name
    values = dict(cell["values"])
    model = values.pop("model", architecture)
    return str(model), " / ".join(str(v) for v in values.values()) or "-"


def run_evaluations(folder: Path, progress: bool = True) -> list[dict[str, Any]]:
    """metrics.json of each evaluation of a run, scoring its validation split first when it has none."""
    from pneumoscope.evaluation.evaluate import evaluate
    from pneumoscope.results import eval_folders, read_metrics

    if not (folder / "eval-val" / "metrics.json").is_file():
        evaluate(folder, split="val", proxies=False, report=False, progress=progress)
    found = eval_folders(folder)
    found.sort(key=lambda p: (p.name != "eval-val", p.name))
    return [read_metrics(p) for p in found]


def evaluated_on(metrics: dict[str, Any]) -> str:
    data = metrics.get("data", {})
    split = data.get("split", "?")
    if data.get("paths", ["(the run's manifest)"]) == ["(the run's manifest)"]:
        return f"{split} (run's manifest)"
    names = ", ".join(Path(p).name for p in data.get("paths", []))
    return f"{split}: {names}"


def comparison_table(entries: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """``tables.comparison_table`` with an ``evaluated_on`` column and CI bounds (``_low`` / ``_high``) where a single
    run's bootstrap gives them."""
    from pneumoscope.metrics.tables import comparison_table

    if not entries:
        raise DataError("no results to compare.", fix="pass finished runs.")
    frame = comparison_table(entries)
    frame.insert(2, "evaluated_on", [e["evaluated_on"] for e in entries])
    for i, entry in enumerate(entries):
        headline = entry.get("headline")
        if not headline:
            continue
        _set(frame, i, "accuracy", headline["accuracy"])
        for name, values in headline["per_class"].items():
            for metric in PER_CLASS_CI_METRICS:
                if metric in values:  # older metrics.json: sensitivity and specificity only
                    _set(frame, i, f"{name}_{metric}", values[metric])
    return frame[_ordered(frame.columns)]


def _set(frame: pd.DataFrame, row: int, column: str, ci: dict[str, Any]) -> None:
    for bound in ("low", "high"):
        name = f"{column}_{bound}"
        if name not in frame.columns:
            frame[name] = float("nan")
        frame.loc[frame.index[row], name] = float("nan") if ci.get(bound) is None else float(ci[bound])


def _ordered(columns: Sequence[str]) -> list[str]:
    """Each metric followed by its std / low / high companions."""
    companions = ("_std", "_low", "_high")
    base = [c for c in columns if not c.endswith(companions)]
    ordered = []
    for column in base:
        ordered.append(column)
        ordered += [column + s for s in companions if column + s in columns]
    return ordered


def write_comparison(frame: pd.DataFrame, out_dir: Path, grid: Grid | None = None) -> dict[str, Path]:
    """comparison.csv / .md / .html in ``out_dir``."""
    from pneumoscope.metrics.tables import to_csv, to_markdown
    from pneumoscope.report.html import write_report

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {kind: out_dir / f"{COMPARISON}.{kind}" for kind in ("csv", "md", "html")}
    atomic_write_text(paths["csv"], to_csv(frame))
    claim = _claim(grid)
    title = f"Comparison: {grid.name}" if grid else "Comparison"
    markdown = f"# {title}\n\n" + (f"{grid.description}\n\n" if grid and grid.description else "")
    markdown += to_markdown(frame) + "\n" + _legend() + "\n" + (f"\n{claim}\n" if claim else "")
    atomic_write_text(paths["md"], markdown)
    extra: list[dict[str, Any]] = [{"title": "Models and strategies", "table": frame,
                                    "text": grid.description if grid else None, "note": _legend()}]
    if claim:
        extra.append({"title": "The paper's claim", "text": claim})
    if grid is not None:
        extra.append({"title": "Grid", "pre": grid.source.read_text(encoding="utf-8")})
    write_report({"extra": extra}, paths["html"], title=title, kind="comparison",
                 meta={"rows": len(frame), "grid": grid.name if grid else None,
                       "cv folds": grid.cv_folds if grid else None})
    return paths


def _legend() -> str:
    return ("Accuracy, precision, sensitivity (recall) and F1 per class at each model's stored operating point. "
            "[95 % CI]: percentile bootstrap resampling patients (single runs); ± std: across cv folds. Rows "
            "evaluated on 'val' are the split that chose the epoch and threshold: optimistic.")


def _claim(grid: Grid | None) -> str:
    if grid is None or not grid.paper:
        return ""
    parts = [f"Paper's claim: {grid.paper['claim']}" if grid.paper.get("claim") else ""]
    if grid.paper.get("reference"):
        parts.append(f"Reference: {grid.paper['reference']}")
    parts += [f"{k}: {v}" for k, v in grid.paper.items() if k not in ("claim", "reference")]
    return "\n\n".join(p for p in parts if p)
