"""``pneumoscope evaluate``: score a trained run on labelled data; metrics.json, predictions.csv, report.html."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_command)


def evaluate_command(
    run_dir: Path = typer.Argument(..., help="Run folder written by `pneumoscope train`."),
    data: list[Path] = typer.Option(None, "--data", help="Labelled data (folder or CSV manifest); repeat for "
                                                        "several. Default: the run's own manifest."),
    split: str = typer.Option("auto", "--split", help="test, val (the run's validation split), all, or auto "
                                                      "(test where the data has one, else all)."),
    out: Path = typer.Option(None, "--out", help="Output folder (default RUN_DIR/eval-<split>[-<data>])."),
    proxies: bool = typer.Option(True, "--proxies/--no-proxies", help="Generalisation proxies + stress test "
                                                                      "(binary / 3-class Kermany models)."),
    max_images: int = typer.Option(None, "--max-images", help="Patient-grouped subsample of the data."),
    stress_images: int = typer.Option(None, "--stress-images", help="Validation images for the stress test "
                                                                    "(default 100)."),
    severities: str = typer.Option(None, "--severities", help="Stress-test severities, e.g. 1,3,5 (default)."),
    proxy_images: int = typer.Option(None, "--proxy-images", help="Only the first N unseen-site normals."),
    data_root: Path = typer.Option(None, "--data-root", help="Folder holding covid19_radiography/ and "
                                                             "chest_xray_fullres_sample/ (default $PNEUMOSCOPE_DATA)."),
    skip_unknown_labels: bool = typer.Option(False, "--skip-unknown-labels",
                                             help="Leave out (and count) images whose labels the model cannot "
                                                  "score, instead of stopping."),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap resamples for the 95 % CIs."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or auto."),
    log_to: Path = typer.Option(None, "--log-to", help="Tracked run folder (trained with tracking.loggers "
                                                       "mlflow / tensorboard, usually RUN_DIR itself): log the "
                                                       "metrics with CIs and the report to its MLflow run / "
                                                       "TensorBoard log."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bars (log-friendly)."),
) -> None:
    """Score a trained run on any labelled data and write metrics.json, predictions.csv and report.html."""
    from pneumoscope.api import evaluate
    from pneumoscope.robustness.suite import parse_severities

    result = evaluate(run_dir, data or None, split=split, out=out, proxies=proxies, max_images=max_images,
                      skip_unknown_labels=skip_unknown_labels, bootstrap=bootstrap, stress_images=stress_images,
                      severities=parse_severities(severities) if severities else None, proxy_images=proxy_images,
                      data_root=data_root, seed=seed, device=device, progress=not no_progress, log_to=log_to)
    print_summary(result.metrics, result.folder)


def print_summary(metrics: dict[str, Any], folder: Path) -> None:
    """The headline figures with their intervals, the proxies, and the files written."""
    from rich.table import Table

    from pneumoscope.cli.common import out

    headline = metrics["headline"]
    data = metrics["data"]
    table = Table(title=f"{metrics['model']['task']} model on {data['n']} images ({data['split']} split)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("95 % CI", justify="right")
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc"):
        table.add_row(key.replace("_", " "), *_ci(headline[key]))
    for name, values in headline["per_class"].items():
        table.add_row(f"sensitivity {name}", *_ci(values["sensitivity"]))
    if len(headline["per_class"]) == 2:
        positive = list(headline["per_class"])[1]
        table.add_row("specificity", *_ci(headline["per_class"][positive]["specificity"]))
    table.add_row("ECE", f"{metrics['calibration']['ece']:.4f}", "")
    robustness = metrics.get("robustness") or {}
    unseen = robustness.get("unseen_site_normals") or {}
    if unseen.get("specificity") is not None:
        table.add_row("unseen-site normals specificity", f"{unseen['specificity']:.4f}",
                      f"{unseen['specificity_ci_low']:.3f}–{unseen['specificity_ci_high']:.3f}")
    resolution = robustness.get("resolution_consistency") or {}
    if resolution.get("agreement") is not None:
        table.add_row("full-res vs 224 px agreement", f"{resolution['agreement']:.4f}", "")
    out.print(table)
    for note in data.get("notes", []):
        out.print(f"note: {note}", highlight=False)
    out.print(f"results: {folder.resolve()} (metrics.json, predictions.csv, report.html)", highlight=False)


def _ci(entry: dict[str, Any]) -> tuple[str, str]:
    if entry.get("value") is None:
        return "–", ""
    interval = f"{entry['low']:.3f}–{entry['high']:.3f}" if entry.get("low") is not None else ""
    return f"{entry['value']:.4f}", interval
