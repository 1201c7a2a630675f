"""``pneumoscope cv``: patient-grouped stratified k-fold cross-validation of a training config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer


def register(app: typer.Typer) -> None:
    app.command("cv")(cv_command)


def config_overrides(data: list[Path] | None, settings: list[str] | None) -> dict[str, Any]:
    """``--data`` paths and ``--set KEY=VALUE`` pairs as one nested override mapping."""
    from pneumoscope.training.config import deep_merge, parse_override

    values: dict[str, Any] = {"data": {"paths": [str(p) for p in data]}} if data else {}
    for setting in settings or []:
        values = deep_merge(values, parse_override(setting))
    return values


def cv_command(
    config: Path = typer.Argument(..., help="Training config (YAML, as for `pneumoscope train --config`)."),
    folds: int = typer.Option(5, "--folds", help="Number of folds (patient-grouped, stratified)."),
    out: Path = typer.Option(None, "--out", help="cv folder (default runs/cv-<time>-<task>-<model>); "
                                                 "run again with the same --out to resume."),
    data: list[Path] = typer.Option(None, "--data", help="Data set folder or manifest (overrides data.paths)."),
    settings: list[str] = typer.Option(None, "--set", help="Any config key, e.g. --set trainer.epochs=1."),
    preset: str = typer.Option(None, "--preset", help="Recipe: recommended (default), standardised, plain or strong."),
    bootstrap: int = typer.Option(200, "--bootstrap", help="Bootstrap resamples for each fold's CIs."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bars (log-friendly)."),
) -> None:
    """Train one model per fold, score each on its held-out fold; mean ± std per metric and class, pooled
    confusion matrix (cv_summary.csv/.json, cv_report.html). Finished folds are skipped on a re-run."""
    import json
    from datetime import datetime

    from rich.table import Table

    from pneumoscope.cli.common import out as stdout
    from pneumoscope.evaluation.cv import CV_SUMMARY_JSON, cross_validate
    from pneumoscope.progress import status_line
    from pneumoscope.training.config import override_notes, resolve_config

    overrides = config_overrides(data, settings)
    for note in override_notes(config, overrides, preset):
        status_line(note)
    resolved = resolve_config(config, overrides, preset=preset)
    folder = out or Path("runs") / f"cv-{datetime.now():%Y%m%d-%H%M%S}-{resolved.task}-{resolved.model.name}"
    cross_validate(resolved, folds, folder, progress=not no_progress, n_boot=bootstrap)
    result = json.loads((folder / CV_SUMMARY_JSON).read_text())
    table = Table(title=f"{result['folds']}-fold cross-validation ({result['task']}, {result['model']})")
    table.add_column("metric")
    table.add_column("mean", justify="right")
    table.add_column("std", justify="right")
    for name in ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc"):
        entry = result["summary"][name]
        table.add_row(name.replace("_", " "), _fmt(entry["mean"]), _fmt(entry["std"]))
    for name in result["classes"]:
        entry = result["summary"][f"{name}_sensitivity"]
        table.add_row(f"sensitivity {name}", _fmt(entry["mean"]), _fmt(entry["std"]))
    stdout.print(table)
    stdout.print(f"results: {folder.resolve()} (cv_summary.csv/.json, cv_folds.csv, cv_per_class.csv, "
                 "cv_report.html)", highlight=False)


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"
