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
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bars (log-friendly)."),
) -> None:
    """Accuracy and per-class precision / sensitivity / F1 per model and strategy, with CIs: CSV, Markdown, HTML.
    A grid file is run first; finished cells are skipped on a re-run."""
    from pneumoscope.cli.common import out as stdout
    from pneumoscope.evaluation.compare import compare

    paths = compare(targets, out, [str(p) for p in data] if data else None, settings or [],
                    progress=not no_progress)
    stdout.print(paths["md"].read_text(encoding="utf-8"), highlight=False, soft_wrap=True)
    stdout.print(f"results: {', '.join(str(p.resolve()) for p in paths.values())}", highlight=False)
