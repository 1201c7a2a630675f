"""``pneumoscope data inspect`` and ``pneumoscope data split``: ingest data sets, summarise them, make splits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

data_app = typer.Typer(help="Ingest data sets: inspect them and make patient-grouped splits.", no_args_is_help=True)

_PATHS_HELP = ("data set folders or CSV manifests (Kermany chest_xray/, COVID-19 Radiography DB, class-per-folder "
               "tree, CSV with path,label); NAME=PATH sets the source name")
_WORKERS_HELP = "scan processes (default: the CPU cores, at most 8)"


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")


@data_app.command("inspect")
def inspect_command(
    paths: Annotated[list[str], typer.Argument(help=_PATHS_HELP, show_default=False, metavar="PATH")],
    out: Annotated[Path | None, typer.Option("--out", help="also write manifest.csv/.parquet, problems.csv and "
                                                           "summary.json into this folder")] = None,
    workers: Annotated[int | None, typer.Option("--workers", help=_WORKERS_HELP)] = None,
    show_problems: Annotated[int, typer.Option("--show-problems", help="problem files printed (all go to "
                                                                       "problems.csv)")] = 20,
) -> None:
    """Counts per split × class × source, patients, image sizes, duplicates and unreadable files."""
    from pneumoscope.api import read_dataset, summarize_dataset
    from pneumoscope.data.manifest import save_manifest
    from pneumoscope.data.summary import render

    stdout = _stdout()

    manifest = read_dataset(paths, workers=workers, progress=True)
    tables = summarize_dataset(manifest)
    stdout.print(render(tables["counts"], "Images per source × official split × label (readable images)"))
    stdout.print(render(tables["patients"], "Patients"))
    stdout.print(render(tables["sizes"], "Image sizes (width / height: min / median / max)"))
    stdout.print(render(tables["duplicates"], "Identical files (same sha256)"))
    _print_problems(tables["problems"], show_problems)
    if out is not None:
        written = save_manifest(manifest, out)
        written.append(_write_csv(tables["problems"], out / "problems.csv"))
        written.append(_write_json({name: frame.to_dict(orient="records") for name, frame in tables.items()
                                    if name != "problems"} | {"problem_count": len(tables["problems"])},
                                   out / "summary.json"))
        stdout.print("wrote " + ", ".join(str(p) for p in written))


@data_app.command("split")
def split_command(
    paths: Annotated[list[str], typer.Argument(help=_PATHS_HELP, show_default=False, metavar="PATH")],
    out: Annotated[Path, typer.Option("--out", help="folder for manifest.csv, manifest.parquet and split tables")],
    task: Annotated[str, typer.Option("--task", help="binary, 3class or 4class")] = "binary",
    val_fraction: Annotated[float, typer.Option("--val-fraction", help="share of patients carved out for "
                                                                       "validation")] = 0.15,
    test_fraction: Annotated[float, typer.Option("--test-fraction", help="share carved out for test from sources "
                                                                         "without an official test")] = 0.0,
    folds: Annotated[int, typer.Option("--folds", help="cross-validation folds over train+val (0: none)")] = 0,
    seed: Annotated[int, typer.Option("--seed", help="random seed (the same seed gives the same split)")] = 42,
    max_images: Annotated[int | None, typer.Option("--max-images", help="first take a patient-grouped, "
                                                                         "class-stratified subsample of about N "
                                                                         "images (quick experiments)")] = None,
    workers: Annotated[int | None, typer.Option("--workers", help=_WORKERS_HELP)] = None,
) -> None:
    """Patient-grouped, class-stratified splits (and folds); writes OUT/manifest.csv and prints the split table."""
    from pneumoscope.api import read_dataset, split_dataset
    from pneumoscope.cli.common import console
    from pneumoscope.data.manifest import save_manifest
    from pneumoscope.data.summary import fold_table, problem_table, render, split_table
    from pneumoscope.tasks import task_classes

    task_classes(task)  # unknown task: ConfigError before any work
    stdout = _stdout()
    manifest = read_dataset(paths, workers=workers, progress=True)
    manifest = split_dataset(manifest, task, val_fraction=val_fraction, test_fraction=test_fraction, folds=folds,
                             seed=seed, max_images=max_images)
    written = save_manifest(manifest, out)
    splits = split_table(manifest, task)
    stdout.print(render(splits, f"Splits for task {task} (seed {seed}): images per class, patients"))
    written.append(_write_csv(splits, out / "splits.csv"))
    if manifest["source"].nunique() > 1:
        per_source = split_table(manifest, task, by_source=True)
        stdout.print(render(per_source, "Splits per source"))
        written.append(_write_csv(per_source, out / "splits_by_source.csv"))
    if folds:
        fold_rows = fold_table(manifest, task)
        stdout.print(render(fold_rows, f"{folds} folds (patient-grouped, stratified)"))
        written.append(_write_csv(fold_rows, out / "folds.csv"))
    _print_problems(problem_table(manifest), 20)
    console.print("leakage check passed: no patient and no identical image on two sides"
                  + (" or in two folds." if folds else "."))
    stdout.print("wrote " + ", ".join(str(p) for p in written))


def _stdout():
    """The CLI's stdout console; wide when writing to a file or pipe, so that tables are not truncated."""
    from rich.console import Console

    from pneumoscope.cli.common import out

    return out if out.is_terminal else Console(width=200)


def _print_problems(problems, limit: int) -> None:
    from pneumoscope.data.summary import render

    stdout = _stdout()

    errors = int((problems["level"] == "error").sum())
    warnings = len(problems) - errors
    if problems.empty:
        stdout.print("problems: none (every file was read).")
        return
    stdout.print(f"problems: {errors} unreadable file(s) skipped (kept in the manifest with status=error), "
                 f"{warnings} warning(s).")
    shown = problems.head(limit) if limit >= 0 else problems
    stdout.print(render(shown, f"Problems ({len(shown)} of {len(problems)} shown)"))


def _write_csv(frame, path: Path) -> Path:
    from pneumoscope.files import atomic_write

    return atomic_write(path, lambda handle: frame.to_csv(handle, index=False))


def _write_json(payload: dict, path: Path) -> Path:
    from pneumoscope.files import atomic_write_text

    return atomic_write_text(path, json.dumps(payload, indent=2, default=str) + "\n")
