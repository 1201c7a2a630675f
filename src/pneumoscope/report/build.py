"""Build the report of a trained run from its files: the run folder (config, manifest, metrics.csv, model) and one
evaluation folder (metrics.json, predictions.csv, robustness files), so that ``pneumoscope report`` can rebuild it
at any time without scoring again (only the thumbnails read a few images back, and Grad-CAM runs on a few errors).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pneumoscope.errors import DataError, PneumoscopeError
from pneumoscope.inference.runs import LoadedRun, load_run

ERROR_THUMBNAILS = 12
GRADCAM_IMAGES = 6
ROBUSTNESS_DIR = "robustness"
REPORT_FILE = "report.html"


def write_evaluation_report(run: LoadedRun, eval_dir: str | Path, out: str | Path | None = None,
                            images: np.ndarray | None = None, filters: bool = False, gradcam: bool = True) -> Path:
    """``eval_dir/report.html`` (or ``out``) for the evaluation in ``eval_dir``; ``images``: the model inputs of
    the evaluated rows, if at hand (for the feature-map section)."""
    from pneumoscope.report.html import write_report

    eval_dir = Path(eval_dir)
    sections, meta = evaluation_sections(run, eval_dir, images=images, filters=filters, gradcam=gradcam)
    return write_report(sections, Path(out) if out is not None else eval_dir / REPORT_FILE,
                        title=f"Evaluation of {run.run_dir.resolve().name}", meta=meta)


def write_run_report(run_dir: str | Path, out: str | Path | None = None, eval_name: str | None = None,
                     filters: bool = False, gradcam: bool = True, progress: bool = True) -> Path:
    """``RUN_DIR/report.html`` (or ``out``) from the run's latest evaluation (or ``eval_name``); a run never
    evaluated is first scored on its own validation split (``eval-val``)."""
    from pneumoscope.evaluation.evaluate import eval_folders, evaluate

    run = load_run(run_dir)
    if eval_name is not None:
        eval_dir = run.run_dir / eval_name
        if not (eval_dir / "metrics.json").is_file():
            known = ", ".join(p.name for p in eval_folders(run.run_dir)) or "none"
            raise DataError(f"no evaluation {eval_name!r} in this run folder (found: {known}).", path=run.run_dir,
                            fix="pass one of those names to --eval, or run `pneumoscope evaluate` first.")
    else:
        folders = eval_folders(run.run_dir)
        eval_dir = folders[-1] if folders else evaluate(run.run_dir, split="val", proxies=False, report=False,
                                                        progress=progress)
    return write_evaluation_report(run, eval_dir, out or run.run_dir / REPORT_FILE, filters=filters, gradcam=gradcam)


def write_robustness_report(run: LoadedRun, folder: str | Path, out: str | Path | None = None) -> Path:
    """``folder/robustness.html``: the proxies and the stress test written by ``robustness.suite``."""
    from pneumoscope.report.html import write_report
    from pneumoscope.robustness.suite import read_robustness

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
def evaluation_sections(run: LoadedRun, eval_dir: Path, images: np.ndarray | None = None, filters: bool = False,
                        gradcam: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """The report's sections (see ``report.html``) and its header facts for one evaluation folder."""
    from pneumoscope.evaluation.evaluate import read_metrics, read_predictions
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
        "confident_errors": confident_errors_section(run, frame, y, probs, gradcam),
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
    if filters:
        sections["filters"] = filters_section(run, frame, images)
    data = metrics.get("data", {})
    meta = {"run": run.run_dir.resolve().name, "model": run.meta.get("architecture"), "task": run.task,
            "input": f"{run.image_size} px", "evaluated": f"{data.get('split')} split, {data.get('n')} images",
            "threshold": run.threshold, "temperature": round(run.temperature, 3)}
    return sections, meta


def headline_section(run: LoadedRun, metrics: Mapping[str, Any]) -> dict[str, Any]:
    points = metrics.get("operating_points")
    note = None
    if run.threshold is not None:
        note = (f"Decisions at the stored threshold p({run.classes[1]}) ≥ {run.threshold:.3f}, chosen on the "
                f"validation split ({run.meta.get('threshold_method') or 'validation'}); the table also shows 0.5.")
    return {"ci": metrics["headline"], "operating_points": pd.DataFrame(points) if points else None, "note": note}


def data_summary_section(run: LoadedRun, frame: pd.DataFrame, metrics: Mapping[str, Any]) -> dict[str, Any]:
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


def _training_curves(run: LoadedRun) -> bytes | None:
    from pneumoscope.report.plots import plot_training_curves

    path = run.run_dir / "metrics.csv"
    return plot_training_curves(path) if path.is_file() else None


def confident_errors_section(run: LoadedRun, frame: pd.DataFrame, y: np.ndarray, probs: np.ndarray,
                             gradcam: bool = True) -> dict[str, Any]:
    """Thumbnails of the most confident errors and, for the first few, Grad-CAM overlays of the predicted class."""
    from pneumoscope.data.imaging import load_image
    from pneumoscope.metrics.classification import most_confident_errors
    from pneumoscope.report.plots import plot_thumbnails

    errors = most_confident_errors(y, probs, run.classes, limit=ERROR_THUMBNAILS, threshold=run.threshold)
    if not errors:
        return {"text": "No errors: every evaluated image was classified correctly."}
    grey, captions, missing = [], [], 0
    for error in errors:
        path = Path(str(frame["path"].iat[error["index"]]))
        try:
            grey.append(load_image(path))
        except PneumoscopeError:
            missing += 1
            continue
        captions.append(f"true {error['true']} → {error['predicted']} ({error['confidence']:.2f})\n{path.name[:28]}")
    if not grey:
        return {"text": "The images of the errors can no longer be read (moved or deleted)."}
    section: dict[str, Any] = {"png": plot_thumbnails(grey, captions),
                               "caption": f"The {len(grey)} wrong predictions with the highest confidence."}
    notes = [f"{missing} error image(s) could not be read back."] if missing else []
    if gradcam:
        overlays, note = _gradcam(run, grey[:GRADCAM_IMAGES], captions[:GRADCAM_IMAGES])
        if overlays is not None:
            section["pngs"] = [overlays]
        notes.append(note)
    section["note"] = " ".join(notes) or None
    return section


def _gradcam(run: LoadedRun, images: list[np.ndarray], captions: list[str]) -> tuple[bytes | None, str]:
    from pneumoscope.inference.predictor import Predictor
    from pneumoscope.report.plots import plot_thumbnails

    try:
        predictor = Predictor.from_model(run.model, run.meta, name=run.run_dir.name)
        overlays = [predictor.explain_array(image)["overlay"] for image in images]
    except Exception as error:  # noqa: BLE001 - an optional figure: the report says why it is missing
        return None, f"Grad-CAM skipped ({type(error).__name__}: {error})."
    png = plot_thumbnails(overlays, captions, title="Grad-CAM of the predicted class", colour=True)
    return png, (f"Second grid: Grad-CAM heatmaps of the predicted class for the first {len(images)} errors "
                 "(red: regions that raised that class's score).")


def _robustness_files(run: LoadedRun, eval_dir: Path) -> tuple[dict[str, Any], pd.DataFrame | None] | None:
    from pneumoscope.robustness.suite import read_robustness

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


def filters_section(run: LoadedRun, frame: pd.DataFrame, images: np.ndarray | None) -> dict[str, Any]:
    """First-layer filters and the feature maps of the first evaluated image."""
    from pneumoscope.report.plots import plot_feature_maps, plot_filters

    if images is not None and len(images):
        image = np.asarray(images[0])
    else:
        from pneumoscope.data.imaging import load_image
        from pneumoscope.data.preprocess import preprocess

        image = preprocess(load_image(str(frame["path"].iat[0])), run.image_size, clahe=run.clahe)
    try:
        return {"filters": plot_filters(run.model), "feature_maps": plot_feature_maps(run.model, image),
                "note": f"Feature maps of {Path(str(frame['path'].iat[0])).name}, as the model sees it."}
    except PneumoscopeError as error:
        return {"note": f"Not shown: {error}"}
