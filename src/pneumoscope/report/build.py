"""Build the report of a trained run from its files only: the run folder (model.json, config, manifest,
metrics.csv) and one evaluation folder (metrics.json, predictions.csv, robustness files, the model figures that
``evaluation.figures`` wrote), so that the report can be rebuilt at any time without the model (only the
thumbnails of the errors read a few images back).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from pneumoscope.errors import DataError, PneumoscopeError
from pneumoscope.results import (
    EPOCH_METRICS_CSV,
    FEATURE_MAPS_PNG,
    FILTERS_PNG,
    GRADCAM_ERRORS_PNG,
    REPORT_HTML,
    ROBUSTNESS_DIR,
    RunRecord,
    read_figure_notes,
    read_metrics,
    read_predictions,
    read_robustness,
)

ERROR_THUMBNAILS = 12


def write_evaluation_report(run: RunRecord, eval_dir: str | Path, out: str | Path | None = None,
                            filters: bool = True, gradcam: bool = True) -> Path:
    """``eval_dir/report.html`` (or ``out``) for the evaluation in ``eval_dir``; ``filters`` / ``gradcam``: show
    those figures where the evaluation folder holds them."""
    from pneumoscope.report.html import write_report

    eval_dir = Path(eval_dir)
    sections, meta = evaluation_sections(run, eval_dir, filters=filters, gradcam=gradcam)
    return write_report(sections, Path(out) if out is not None else eval_dir / REPORT_HTML,
                        title=f"Evaluation of {run.run_dir.resolve().name}", meta=meta)


def write_robustness_report(run: RunRecord, folder: str | Path, out: str | Path | None = None) -> Path:
    """``folder/robustness.html``: the proxies and the stress test written by ``robustness.suite``."""
    from pneumoscope.report.html import write_report

    folder = Path(folder)
    found = read_robustness(folder)
    if found is None:
        raise DataError("no robustness.json here.", path=folder, fix="run `pneumoscope robustness RUN_DIR` first.")
    result, table = found
    sections = {"generalisation": generalisation_section(result), "stress_test": stress_section(result, table),
                "config": run.config}
    meta = {"run": run.run_dir.resolve().name, "model": run.meta.get("architecture"), "task": run.task,
            "threshold": run.threshold}
    return write_report(sections, Path(out) if out is not None else folder / "robustness.html",
                        title=f"Robustness of {run.run_dir.resolve().name}", meta=meta, kind="robustness report")


# ------------------------------------------------------------------------------------------------------ sections
def evaluation_sections(run: RunRecord, eval_dir: Path, filters: bool = True,
                        gradcam: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """The report's sections (see ``report.html``) and its header facts for one evaluation folder."""
    from pneumoscope.metrics.tables import per_class_table
    from pneumoscope.report import plots

    metrics = read_metrics(eval_dir)
    classes = run.classes
    frame, y, probs = read_predictions(eval_dir, classes)
    m = metrics["metrics"]
    sections: dict[str, Any] = {
        "headline": headline_section(run, metrics),
        "splits": metrics.get("split_uses"),
        "data_summary": data_summary_section(run, frame, metrics),
        "per_class": {"table": per_class_table(m, metrics["headline"]),
                      "note": "Sensitivity = recall; specificity one-vs-rest; [95 % bootstrap CI by patient]."},
        "per_source": _per_source(metrics),
        "scope": scope_section(metrics.get("scope")),
        "confusion_matrix": {"png": plots.plot_confusion_matrix(m["confusion_matrix"], classes),
                             "caption": "Rows: true class; columns: predicted class."},
        "roc_pr": plots.plot_roc_pr(y, probs, classes),
        "calibration": calibration_section(metrics["calibration"]),
        "training_curves": _training_curves(run),
        "confident_errors": confident_errors_section(run, eval_dir, frame, y, probs, gradcam),
        "shortcut_audit": metrics.get("shortcut_audit") or None,
        "config": run.config,
    }
    robustness = _robustness_files(run, eval_dir)
    if robustness is not None:
        result, table = robustness
        sections["generalisation"] = generalisation_section(result)
        sections["stress_test"] = stress_section(result, table)
    elif isinstance(metrics.get("robustness"), Mapping) and metrics["robustness"].get("skipped"):
        hint = "" if "binary and 3-class" in metrics["robustness"]["skipped"] else \
            " `pneumoscope robustness RUN_DIR` computes the stress test and the proxies."
        sections["generalisation"] = {"text": f"Not computed: {metrics['robustness']['skipped']}.{hint}"}
    figure = filters_section(eval_dir) if filters else None
    if figure is not None:
        sections["filters"] = figure
    data = metrics.get("data", {})
    meta = {"run": run.run_dir.resolve().name, "model": run.meta.get("architecture"), "task": run.task,
            "input": f"{run.image_size} px", "evaluated": f"{data.get('split')} split, {data.get('n')} images",
            "threshold": run.threshold, "temperature": round(run.temperature, 3)}
    return sections, meta


def headline_section(run: RunRecord, metrics: Mapping[str, Any]) -> dict[str, Any]:
    points = metrics.get("operating_points")
    note = None
    if run.threshold is not None:
        note = (f"Decisions at the stored threshold p({run.classes[1]}) ≥ {run.threshold:.3f}, chosen on the "
                f"validation split ({run.meta.get('threshold_method') or 'validation'}); the table also shows 0.5.")
    return {"ci": metrics["headline"], "operating_points": pd.DataFrame(points) if points else None, "note": note}


def data_summary_section(run: RunRecord, frame: pd.DataFrame, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Counts per split (the run's manifest + the evaluated images), per source and patients."""
    from pneumoscope.metrics.tables import data_summary
    from pneumoscope.tasks import label_column

    column = label_column(run.task)
    evaluated = pd.DataFrame({"split": "evaluated", "source": frame["source"].astype(str),
                              column: frame["label"].astype(str), "patient_id": frame["patient_id"].astype(str)})
    if "patient_id_known" in frame.columns:
        evaluated["patient_id_known"] = frame["patient_id_known"].astype(str).str.lower().isin(["true", "1"])
    scored = data_summary(evaluated, column)
    notes = ["Images per source and class: the evaluated images."]
    if run.manifest is None:
        notes.insert(0, "The run folder has no manifest.csv: only the evaluated images are counted.")
        summary = scored
    else:
        trained = data_summary(run.manifest, column)
        evaluated_row = scored["by_split"].loc[scored["by_split"]["split"] == "evaluated"]
        by_split = pd.concat([trained["by_split"], evaluated_row], ignore_index=True).fillna(0)
        for name in by_split.columns[1:]:
            by_split[name] = by_split[name].astype(int)
        summary = {"by_split": by_split, "by_source": scored["by_source"],
                   "patients": pd.concat([trained["patients"], scored["patients"]], ignore_index=True),
                   "unreadable": trained.get("unreadable", 0)}
        notes.insert(0, "Splits train / val / test / excluded: the run's manifest (how the model was trained and "
                        "selected); 'evaluated': the images scored here (they may repeat val or test rows).")
    notes += metrics.get("data", {}).get("notes", [])
    return {**summary, "notes": notes}


def calibration_section(calibration: Mapping[str, Any]) -> dict[str, Any]:
    from pneumoscope.report.plots import plot_reliability

    keys = ("ece", "brier", "temperature", "ece_before", "brier_before", "n_bins")
    return {"png": plot_reliability(calibration["reliability"], calibration["ece"]),
            **{k: calibration.get(k) for k in keys}}


def scope_section(scope: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Accuracy in scope and out of scope, and the reasons (older evaluations without them: no section)."""
    if not scope:
        return None
    rows = [{"images": name.replace("_", " "), "n": scope[name]["n"], "accuracy": scope[name]["accuracy"]}
            for name in ("in_scope", "out_of_scope")]
    rows += [{"images": f"out of scope: {reason}", "n": n, "accuracy": None}
             for reason, n in (scope.get("reasons") or {}).items()]
    note = ("In scope: the model applies to the image (see docs/SCOPE.md); accuracy out of scope is what the "
            "model would do on images it was not trained for, and its labels there are not to be trusted.")
    population = scope.get("population")
    if isinstance(population, Mapping) and population.get("description"):
        note += f" Trained population: {population['description']}."
    elif isinstance(population, str) and population:  # evaluations written before the population was a record
        note += f" Trained population: {population}."
    if scope.get("note"):
        note += " " + scope["note"]
    return {"table": pd.DataFrame(rows), "note": note}


def _per_source(metrics: Mapping[str, Any]) -> pd.DataFrame | None:
    rows = metrics.get("per_source") or []
    return pd.DataFrame(rows) if len(rows) > 1 else None


def _training_curves(run: RunRecord) -> bytes | None:
    from pneumoscope.report.plots import plot_training_curves

    path = run.run_dir / EPOCH_METRICS_CSV
    return plot_training_curves(path) if path.is_file() else None


def confident_errors_section(run: RunRecord, eval_dir: Path, frame: pd.DataFrame, y: Any, probs: Any,
                             gradcam: bool = True) -> dict[str, Any]:
    """Thumbnails of the most confident errors and, where the evaluation drew them, Grad-CAM overlays of the
    predicted class for the first few."""
    from pneumoscope.metrics.classification import most_confident_errors
    from pneumoscope.report.plots import plot_thumbnails

    errors = most_confident_errors(y, probs, run.classes, limit=ERROR_THUMBNAILS, threshold=run.threshold)
    if not errors:
        return {"text": "No errors: every evaluated image was classified correctly."}
    grey, captions, missing = read_error_images(errors, frame)
    if not grey:
        return {"text": "The images of the errors can no longer be read (moved or deleted)."}
    section: dict[str, Any] = {"png": plot_thumbnails(grey, captions),
                               "caption": f"The {len(grey)} wrong predictions with the highest confidence."}
    notes = [f"{missing} error image(s) could not be read back."] if missing else []
    if gradcam:
        overlays = eval_dir / GRADCAM_ERRORS_PNG
        if overlays.is_file():
            section["pngs"] = [overlays.read_bytes()]
        drawn = read_figure_notes(eval_dir).get("gradcam")
        if drawn is None:
            notes.append("Grad-CAM overlays were not drawn for this evaluation (`pneumoscope report` draws them).")
        elif drawn.get("note"):
            notes.append(drawn["note"])
    section["note"] = " ".join(notes) or None
    return section


def read_error_images(errors: list[dict[str, Any]], frame: pd.DataFrame) -> tuple[list[Any], list[str], int]:
    """The grey images of ``errors`` (``most_confident_errors`` on the rows of ``frame``) that can still be read,
    their captions, and how many could not be read."""
    from pneumoscope.data.imaging import load_image

    grey, captions, missing = [], [], 0
    for error in errors:
        path = Path(str(frame["path"].iat[error["index"]]))
        try:
            grey.append(load_image(path))
        except PneumoscopeError:
            missing += 1
            continue
        captions.append(error_caption(error, path))
    return grey, captions, missing


def error_caption(error: Mapping[str, Any], path: Path) -> str:
    """The caption of one confident error's thumbnail (the same under its Grad-CAM overlay)."""
    return f"true {error['true']} → {error['predicted']} ({error['confidence']:.2f})\n{path.name[:28]}"


def _robustness_files(run: RunRecord, eval_dir: Path) -> tuple[dict[str, Any], pd.DataFrame | None] | None:
    return read_robustness(eval_dir) or read_robustness(run.run_dir / ROBUSTNESS_DIR)


def generalisation_section(result: Mapping[str, Any]) -> dict[str, Any]:
    """The proxies' summaries; a skipped proxy is named with its reason in the note."""
    spec: dict[str, Any] = {}
    notes = []
    for key, title in (("unseen_site_normals", "Unseen-site normals"),
                       ("resolution_consistency", "Resolution consistency")):
        summary = result.get(key) or {}
        if summary.get("skipped"):
            notes.append(f"{title}: not computed ({summary['skipped']}).")
        elif summary:
            spec[key] = {k: v for k, v in summary.items() if k not in ("file",)}
    if not spec:
        spec["text"] = "No generalisation proxy was computed."
    spec["note"] = " ".join(notes) or None
    return spec


def stress_section(result: Mapping[str, Any], table: pd.DataFrame | None) -> dict[str, Any] | None:
    if table is None:
        return None
    stress = result.get("stress_test", {})
    settings = result.get("settings", {})
    note = (f"{stress.get('n_images', '?')} images ({stress.get('n_patients', '?')} patients) of the run's "
            f"validation split, perturbed at their stored resolution before the model's preprocessing; severities "
            f"{settings.get('severities')}. Red line: clean images.")
    return {"table": table, "note": note}


def filters_section(eval_dir: Path) -> dict[str, Any] | None:
    """First-layer filters and the feature maps of one evaluated image, where the evaluation drew them."""
    notes = read_figure_notes(eval_dir).get("filters")
    if notes is None:
        return None
    section: dict[str, Any] = {"note": notes.get("note")}
    for key, name in (("filters", FILTERS_PNG), ("feature_maps", FEATURE_MAPS_PNG)):
        if (eval_dir / name).is_file():
            section[key] = (eval_dir / name).read_bytes()
    return section
