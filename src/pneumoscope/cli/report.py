"""``pneumoscope report``: (re)build the self-contained HTML report of a run."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("report")(report_command)


def report_command(
    run_dir: Path = typer.Argument(..., help="Run folder written by `pneumoscope train`."),
    out: Path = typer.Option(None, "--out", help="HTML file to write (default RUN_DIR/report.html)."),
    eval_name: str = typer.Option(None, "--eval", help="Evaluation folder to report, e.g. eval-test-chest_xray "
                                                       "(default: the latest; none: score the validation split)."),
    filters: bool = typer.Option(False, "--filters", help="Add first-layer filters and feature maps."),
    gradcam: bool = typer.Option(True, "--gradcam/--no-gradcam", help="Grad-CAM overlays of the worst errors."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bars (log-friendly)."),
) -> None:
    """Training curves, metrics with CIs, confusion matrix, ROC/PR, calibration, errors, data, config, audits."""
    from pneumoscope.cli.common import out as stdout
    from pneumoscope.evaluation.reporting import write_run_report

    page = write_run_report(run_dir, out, eval_name=eval_name, filters=filters, gradcam=gradcam,
                            progress=not no_progress)
    stdout.print(f"report: {page.resolve()}", highlight=False)
