"""``pneumoscope compare``: a Table-II-like comparison of runs, or of an experiment grid it runs first."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_command)


def compare_command(
    targets: list[Path] = typer.Argument(..., help="Run folders / cv folders, or one grid YAML file."),
    out: Path = typer.Option(None, "--out", help="Run folders: the comparison folder (default runs/compare-<time>). "
                                                 "Grid: the root of <name>/ (default runs)."),
    data: list[Path] = typer.Option(None, "--data", help="Grid: data paths for every cell (override base.data.paths)."),
    settings: list[str] = typer.Option(None, "--set", help="Grid: config override for every cell, e.g. "
                                                           "--set trainer.epochs=1."),
    log_to: Path = typer.Option(None, "--log-to", help="Tracked run folder: log the comparison files to its "
                                                       "MLflow run."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bars (log-friendly)."),
) -> None:
    """Accuracy and per-class precision / sensitivity / F1 per model and strategy, with CIs: CSV, Markdown, HTML.
    A grid file is run first; finished cells are skipped on a re-run."""
    from pneumoscope.api import compare
    from pneumoscope.cli.common import out as stdout

    result = compare(targets, out=out, data=data or None, overrides=settings or (), progress=not no_progress,
                     log_to=log_to)
    stdout.print(result.markdown, highlight=False, soft_wrap=True)
    stdout.print(f"results: {', '.join(str(p.resolve()) for p in result.files.values())}", highlight=False)
