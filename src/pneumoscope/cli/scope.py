"""``pneumoscope scope fit``: fit the applicability check, and write each model's population and flag rates."""

from __future__ import annotations

from pathlib import Path

import typer

scope_app = typer.Typer(help="The applicability check: is the image a chest X-ray of the model's population "
                             "(docs/SCOPE.md).", no_args_is_help=True)


@scope_app.command("fit")
def fit_command(
    models: list[str] = typer.Argument(..., help="Run folders, model folders or bundled model names."),
    manifest: list[Path] = typer.Option(None, "--manifest", help="The manifest.csv of the run that trained each "
                                                                 "model, in the order of the models (default: "
                                                                 "MODEL/manifest.csv). Their val rows are never "
                                                                 "fitted on."),
    retrain: bool = typer.Option(False, "--retrain", help="Fit the applicability check itself again, on the train "
                                                          "rows of every manifest and the --other X-rays (about 30 "
                                                          "minutes of one CPU core), before measuring each model."),
    other: list[Path] = typer.Option(None, "--other", help="Adult X-rays (files or folders; default "
                                                           "DATA/covid19_radiography)."),
    fullres: list[Path] = typer.Option(None, "--fullres", help="Full-resolution originals of the training archive "
                                                               "to measure on (default "
                                                               "DATA/chest_xray_fullres_sample where present)."),
    data: Path = typer.Option(None, "--data", help="Data root for the defaults (default $PNEUMOSCOPE_DATA)."),
    seed: int = typer.Option(0, "--seed"),
    card: bool = typer.Option(True, "--card/--no-card", help="Write the measured rates into MODEL_CARD.md."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bars (log-friendly)."),
) -> None:
    """Write each MODEL's training population (from its manifest) and the check's measured flag rates into its
    model.json and model card; with --retrain (or where no check exists), first fit the check on all manifests."""
    from dataclasses import replace

    from pneumoscope.errors import ConfigError
    from pneumoscope.inference.applicability_fit import FitSettings, describe, fit_scope, resolve_model_folder
    from pneumoscope.paths import data_root
    from pneumoscope.progress import status_line

    root = data or data_root()
    manifests = list(manifest or [])
    if not manifests:
        for model in models:
            candidate = resolve_model_folder(model) / "manifest.csv"
            if not candidate.is_file():
                raise ConfigError("no manifest.csv beside this model.", path=candidate.parent,
                                  fix="pass --manifest RUN_DIR/manifest.csv of the run that trained it (or re-create "
                                      "its split with `pneumoscope data split DATA --task TASK --seed SEED`).")
            manifests.append(candidate)
    if not other:
        other = [root / "covid19_radiography"]
        if not other[0].is_dir():
            raise ConfigError("no adult X-rays found.", path=other[0],
                              fix="pass --other FOLDER (adult chest X-rays) or --data ROOT.")
    if not fullres and (root / "chest_xray_fullres_sample").is_dir():
        fullres = [root / "chest_xray_fullres_sample"]
    results = fit_scope(models, manifests, list(other), fullres=list(fullres or []), retrain=retrain,
                        settings=replace(FitSettings(), seed=seed), progress=not no_progress, update_card=card)
    for folder, result in results.items():
        if folder == "check":
            continue
        status_line(f"{folder}: population {result['population']['name']} ({result['population']['description']})")
        for line in describe(result["flag_rates"]):
            status_line(f"  {line}")


def register(app: typer.Typer) -> None:
    """Add ``scope fit``."""
    app.add_typer(scope_app, name="scope")
