"""``pneumoscope ensemble``: finished runs of one task and split combined into one model folder."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("ensemble")(ensemble_command)


def ensemble_command(
    runs: list[Path] = typer.Argument(..., help="Two or more run folders trained on the same data and split."),
    out: Path = typer.Option(..., "--out", help="The ensemble's folder (must not hold a model yet)."),
) -> None:
    """The mean of the runs' probabilities as one model: threshold chosen on their validation split; predict,
    evaluate, export and serve take the folder like a run's."""
    from pneumoscope.api import ensemble
    from pneumoscope.cli.common import out as stdout
    from pneumoscope.results import read_run_record

    folder = ensemble(runs, out)
    meta = read_run_record(folder).meta
    metrics = meta.get("val_metrics") or {}
    shown = ", ".join(f"{key} {metrics[key]:.4f}" for key in ("accuracy_at_threshold", "accuracy", "auc")
                      if isinstance(metrics.get(key), float))
    threshold = "" if meta.threshold is None else f", threshold {meta.threshold:.4f}"
    stdout.print(f"ensemble of {len(runs)} runs{threshold}; validation: {shown}", highlight=False)
    stdout.print(f"model folder: {folder.resolve()}", highlight=False)
