"""``pneumoscope robustness``: the acquisition-shift stress test and the generalisation proxies of a run, alone."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("robustness")(robustness_command)


def robustness_command(
    run_dir: Path = typer.Argument(..., help="Run folder written by `pneumoscope train`."),
    data: Path = typer.Option(None, "--data", help="Folder holding covid19_radiography/ and "
                                                   "chest_xray_fullres_sample/ (default $PNEUMOSCOPE_DATA)."),
    max_images: int = typer.Option(100, "--max-images", help="Validation images for the stress test "
                                                             "(patient-grouped subsample)."),
    severities: str = typer.Option("1,2,3,4,5", "--severities", help="Severities to run, e.g. 1,3,5."),
    perturbations: str = typer.Option(None, "--perturbations", help="Comma-separated subset (default: all)."),
    proxy_images: int = typer.Option(None, "--proxy-images", help="Only the first N unseen-site normals."),
    proxies: bool = typer.Option(True, "--proxies/--no-proxies", help="Also the unseen-site and resolution proxies."),
    out: Path = typer.Option(None, "--out", help="Output folder (default RUN_DIR/robustness)."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or auto."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bars (log-friendly)."),
) -> None:
    """Stress test (perturbations × severities on validation images) + proxies; robustness.json/.csv/.html."""
    from rich.table import Table

    from pneumoscope.cli.common import out as stdout
    from pneumoscope.device import resolve_accelerator
    from pneumoscope.inference.runs import load_run
    from pneumoscope.report.build import write_robustness_report
    from pneumoscope.results import ROBUSTNESS_DIR, read_robustness
    from pneumoscope.robustness.suite import parse_severities, run_robustness

    run = load_run(run_dir)
    folder = out or run.run_dir / ROBUSTNESS_DIR
    names = [p.strip() for p in perturbations.split(",") if p.strip()] if perturbations else None
    result = run_robustness(run, folder, data_root=data, max_images=max_images,
                            severities=parse_severities(severities), perturbations=names,
                            proxy_images=proxy_images, proxies=proxies, strict=True, seed=seed,
                            device=resolve_accelerator(device), progress=not no_progress)
    page = write_robustness_report(run.files(), folder)
    _, frame = read_robustness(folder)
    table = Table(title=f"Stress test on {result['stress_test']['n_images']} validation images")
    for column in ("perturbation", "severity", "accuracy", "specificity", "flip_rate"):
        table.add_column(column, justify="left" if column == "perturbation" else "right")
    for row in frame.itertuples(index=False):
        table.add_row(str(row.perturbation), str(row.severity), f"{row.accuracy:.3f}", f"{row.specificity:.3f}",
                      f"{row.flip_rate:.3f}")
    stdout.print(table)
    for key in ("unseen_site_normals", "resolution_consistency"):
        summary = result[key]
        shown = summary.get("skipped") or ", ".join(f"{k} {summary[k]:.4f}" for k in
                                                   ("specificity", "mean_p_pneumonia", "agreement",
                                                    "mean_abs_delta_p") if summary.get(k) is not None)
        stdout.print(f"{key.replace('_', ' ')}: {shown}", highlight=False)
    stdout.print(f"results: {Path(folder).resolve()} (robustness.json, robustness.csv, {page.name})",
                 highlight=False)
