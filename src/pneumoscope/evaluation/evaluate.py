"""``evaluate(run_dir, data, split)``: score a trained run on any labelled data and write the results.

Writes into ``RUN_DIR/eval-<split>[-<data name>]/`` (or ``out``):

- ``metrics.json``: the model, what was scored and what was left out (and why), which split served what, the
  metrics at the stored operating point (and at 0.5 for a binary model), bootstrap 95 % CIs resampling patients,
  calibration (ECE, Brier, reliability, before/after temperature), the per-source breakdown, the shortcut audit
  (several sources), the scope summary (accuracy in scope and out of scope, reasons: ``models.scope``), and the
  robustness summaries;
- ``predictions.csv``: one row per image (path, source, patient, label, prediction, class probabilities, in_scope,
  scope_reason);
- ``robustness.json`` / ``robustness.csv`` / per-image proxy CSVs: for binary and 3-class Kermany models
  (``robustness.suite``);
- ``gradcam_errors.png`` / ``figures.json``: the model figures of the report (``evaluation.figures``);
- ``report.html``: the self-contained report (``report.build``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pneumoscope.evaluation.selection import Selection, select_images
from pneumoscope.files import atomic_write, atomic_write_text
from pneumoscope.inference.runs import LoadedRun, RunScorer, load_run
from pneumoscope.progress import progress_bar
from pneumoscope.results import (
    EVAL_PREFIX,
    METRICS_JSON,
    PREDICTIONS_CSV,
)

DEFAULT_BOOTSTRAP = 1000


def evaluate(
    run_dir: str | Path,
    data: Sequence[str | Path] | None = None,
    split: str = "auto",
    out: str | Path | None = None,
    *,
    proxies: bool = True,
    max_images: int | None = None,
    skip_unknown_labels: bool = False,
    n_boot: int = DEFAULT_BOOTSTRAP,
    stress_images: int | None = None,
    severities: Sequence[int] | None = None,
    proxy_images: int | None = None,
    data_root: str | Path | None = None,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
    report: bool = True,
) -> Path:
    """Score ``run_dir`` on ``data`` (default: the run's own manifest) and write the files of the module docstring;
    returns the output folder. ``device``: cpu, cuda or auto (a GPU when one is visible)."""
    from pneumoscope.device import resolve_accelerator
    from pneumoscope.progress import status_line

    run = load_run(run_dir)
    selection = select_images(run, data, split, max_images, skip_unknown_labels, seed)
    out_dir = Path(out) if out is not None else run.run_dir / eval_folder_name(selection)
    out_dir.mkdir(parents=True, exist_ok=True)
    status_line(f"evaluating {run.run_dir} on {len(selection.rows)} images ({selection.split} split)")
    device = resolve_accelerator(device)
    results, images = score_selection(run, selection, n_boot=n_boot, seed=seed, device=device, progress=progress)
    write_predictions(out_dir / PREDICTIONS_CSV, selection.rows, results.pop("_probs"), run, results.pop("_scope"))
    results["robustness"] = _robustness(run, out_dir, proxies, stress_images, severities, proxy_images, data_root,
                                        seed, device, progress)
    write_json(out_dir / METRICS_JSON, results)
    if report:
        from pneumoscope.evaluation.figures import write_model_figures
        from pneumoscope.report.build import write_evaluation_report

        write_model_figures(run, out_dir, gradcam=True, images=images)
        write_evaluation_report(run.files(), out_dir)
    return out_dir


def eval_folder_name(selection: Selection) -> str:
    """``eval-<split>`` for the run's own data, ``eval-<split>-<data name>`` for other data."""
    name = f"{EVAL_PREFIX}{selection.split}"
    if selection.data:
        first = str(selection.data[0])
        label = first.partition("=")[0] if "=" in first and not Path(first).exists() else Path(first).stem
        name += "-" + (re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_") or "data")
    return name


def score_selection(run: LoadedRun, selection: Selection, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0,
                    device: str = "cpu", progress: bool = True) -> tuple[dict[str, Any], np.ndarray]:
    """Every metric of ``run`` on the selected rows (``_probs`` holds the probabilities) and the model inputs."""
    from pneumoscope.data.cache import build_cache

    rows = selection.rows
    images = build_cache(rows["path"].tolist(), rows["sha256"].tolist(), run.image_size, clahe=run.clahe,
                         progress=None if progress else False)
    scorer = RunScorer(run, device=device)
    several_sources = rows["source"].nunique() > 1
    logits, features = scorer.logits(images, progress, "scoring", features=several_sources)
    probs = scorer.probabilities(logits)
    results = compute_metrics(run, rows, probs, scorer.probabilities(logits, 1.0), n_boot=n_boot, seed=seed)
    verdicts = scope_verdicts(run, rows, images, progress)
    results["scope"] = scope_summary(run, rows, probs, verdicts)
    results["_scope"] = verdicts
    results["data"] = selection.describe()
    results["split_uses"] = split_uses(run, selection)
    results["shortcut_audit"] = shortcut_audits(rows, images, features, seed) if several_sources else None
    results["_probs"] = probs
    return results, images


def compute_metrics(run: LoadedRun, rows: pd.DataFrame, probs: np.ndarray, raw_probs: np.ndarray,
                    n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> dict[str, Any]:
    """Metrics at the stored operating point (and 0.5), bootstrap CIs by patient, calibration, per source."""
    from pneumoscope.metrics.bootstrap import headline_with_ci
    from pneumoscope.metrics.calibration import (
        brier_score,
        calibration_summary,
        expected_calibration_error,
    )
    from pneumoscope.metrics.classification import classification_metrics
    from pneumoscope.metrics.tables import per_group_table

    classes, threshold = run.classes, run.threshold
    from pneumoscope.metrics.classification import as_labels

    y = as_labels(rows["label"].astype(str).to_numpy(), classes)
    result: dict[str, Any] = {"model": run.describe()}
    result["metrics"] = classification_metrics(y, probs, classes, threshold)
    result["operating_points"] = None
    if len(classes) == 2:
        result["metrics_at_0.5"] = classification_metrics(y, probs, classes, 0.5)
        result["operating_points"] = operating_points(run, result["metrics"], result["metrics_at_0.5"])
    result["headline"] = headline_with_ci(y, probs, classes, groups=rows["patient_id"].astype(str).to_numpy(),
                                          threshold=threshold, n_boot=n_boot, seed=seed)
    calibration = calibration_summary(y, probs)
    calibration["temperature"] = run.temperature
    if run.temperature != 1.0:
        calibration["ece_before"] = expected_calibration_error(y, raw_probs)
        calibration["brier_before"] = brier_score(y, raw_probs)
    result["calibration"] = calibration
    table = per_group_table(y, probs, classes, rows["source"].astype(str).to_numpy(), threshold=threshold)
    result["per_source"] = _records(table)
    return result


def operating_points(run: LoadedRun, at_stored: dict[str, Any], at_half: dict[str, Any]) -> list[dict[str, Any]]:
    """A binary model's figures at its stored threshold and at 0.5, one row each."""
    positive = run.classes[1]
    rows = []
    for label, m in ((f"stored ({run.meta.get('threshold_method') or 'validation'})", at_stored), ("0.5", at_half)):
        pc = m["per_class"][positive]
        rows.append({"operating point": label, "threshold": m["threshold"], "accuracy": m["accuracy"],
                     "balanced_accuracy": m["balanced_accuracy"], "sensitivity": pc["sensitivity"],
                     "specificity": pc["specificity"], f"{positive}_precision": pc["precision"],
                     f"{positive}_f1": pc["f1"]})
    return rows


def split_uses(run: LoadedRun, selection: Selection) -> dict[str, Any]:
    """Which split served what, for metrics.json and the report's "Which split was used for what" section."""
    def count(split: str) -> str:
        n = len(run.rows(split))
        return f" ({n} images)" if run.manifest is not None else ""

    where = ", ".join(selection.data) if selection.data else "the run's manifest"
    uses = {
        "train": "fitting the weights, with augmentation" + count("train"),
        "val": "choosing the epoch (lowest validation loss), the binary threshold and the temperature" + count("val"),
        "test": "never read by training, model selection or calibration (training reads only train and val rows)"
                + count("test"),
        "this evaluation": f"the {selection.split} split of {where}: {len(selection.rows)} images scored here",
    }
    notes = list(selection.notes)
    if selection.split == "val":
        notes.insert(0, "These images are the validation split that chose the epoch, threshold and temperature: "
                        "the figures are optimistic; score a test split or other data for an honest estimate.")
    return {"uses": uses, "note": " ".join(notes) or None}


def shortcut_audits(rows: pd.DataFrame, images: np.ndarray, features: np.ndarray | None,
                    seed: int = 0) -> list[dict[str, Any]]:
    """Source predictability from the pixels and from the model's penultimate features (patient-grouped CV)."""
    from pneumoscope.metrics.shortcut import shortcut_audit

    sources = rows["source"].astype(str).to_numpy()
    groups = rows["patient_id"].astype(str).to_numpy()
    audits = [shortcut_audit(sources, images=images, groups=groups, seed=seed)]
    if features is not None:
        audits.append(shortcut_audit(sources, features=features, groups=groups, seed=seed))
    return audits


def _robustness(run: LoadedRun, out_dir: Path, proxies: bool, stress_images: int | None,
                severities: Sequence[int] | None, proxy_images: int | None, data_root: str | Path | None,
                seed: int, device: str, progress: bool) -> dict[str, Any]:
    from pneumoscope.robustness.suite import (
        DEFAULT_SEVERITIES,
        DEFAULT_STRESS_IMAGES,
        proxies_apply,
        run_robustness,
    )

    if not proxies:
        return {"skipped": "not asked for (--no-proxies)"}
    applies, reason = proxies_apply(run)
    if not applies:
        return {"skipped": reason}
    result = run_robustness(run, out_dir, data_root=data_root, max_images=stress_images or DEFAULT_STRESS_IMAGES,
                            severities=severities or DEFAULT_SEVERITIES, proxy_images=proxy_images, seed=seed,
                            device=device, progress=progress)
    return {key: result[key] for key in ("stress_test", "unseen_site_normals", "resolution_consistency")}


def scope_verdicts(run: LoadedRun, rows: pd.DataFrame, images: np.ndarray, progress: bool = True) -> list[Any]:
    """The scope verdict (``models.scope``) of every scored row: DICOM headers, image statistics and the applicability
    check on the model inputs, against the run's training population."""
    from pneumoscope.data import image_stats
    from pneumoscope.data.dicom_header import read_header
    from pneumoscope.data.imaging import read_file_bytes
    from pneumoscope.data.populations import recorded_population
    from pneumoscope.inference.applicability_runtime import load_runner
    from pneumoscope.models.applicability import applicability_input, check_path_for
    from pneumoscope.models.scope import verdict

    path = check_path_for(run.run_dir)
    runner = None if path is None else load_runner(path)
    population = recorded_population(run.meta, run.run_dir / "manifest.csv")
    formats = rows["format"].astype(str).str.lower() if "format" in rows.columns else pd.Series([""] * len(rows))
    verdicts = []
    with progress_bar(progress, transient=True) as bar:
        task = bar.add_task("scope checks", total=len(rows))
        for start in range(0, len(rows), 64):
            small = [image_stats.downsample(image.astype(np.float32) / 255.0) for image in images[start:start + 64]]
            results = (runner.judge(np.stack([applicability_input(s, runner.input_size) for s in small]))
                       if runner is not None else [None] * len(small))
            for offset, (thumbnail, result) in enumerate(zip(small, results, strict=True)):
                i = start + offset
                header = read_header(read_file_bytes(rows["path"].iat[i])) if formats.iat[i] == "dicom" else None
                verdicts.append(verdict(header, image_stats.image_score(image_stats.thumbnail_stats(thumbnail)),
                                        result, None if runner is None else runner.check, population))
            bar.advance(task, len(small))
    return verdicts


def scope_summary(run: LoadedRun, rows: pd.DataFrame, probs: np.ndarray, verdicts: list[Any]) -> dict[str, Any]:
    """Accuracy in scope and out of scope (counts, and how often each reason was given)."""
    from collections import Counter

    from pneumoscope.data.populations import recorded_population
    from pneumoscope.metrics.classification import predict_classes

    classes = np.array(run.classes)
    correct = classes[predict_classes(probs, run.threshold)] == rows["label"].astype(str).to_numpy()
    inside = np.array([v.in_scope for v in verdicts], dtype=bool)

    def part(mask: np.ndarray) -> dict[str, Any]:
        n = int(mask.sum())
        return {"n": n, "accuracy": float(correct[mask].mean()) if n else None}

    reasons = Counter(reason for v in verdicts for reason in v.reasons)
    population = recorded_population(run.meta, run.run_dir / "manifest.csv")
    checked = bool(verdicts) and "chest_xray" in verdicts[0].as_fields()["scope_checks"]
    note = None
    if not checked:
        note = "no applicability check is installed: only the DICOM header and image statistics were checked."
    elif not population.checked:
        note = f"the run's training population is {population.name}: the population was not checked."
    return {"in_scope": part(inside), "out_of_scope": part(~inside), "reasons": dict(reasons.most_common()),
            "population_check": checked and population.checked, "population": population.as_dict(), "note": note}


def write_predictions(path: Path, rows: pd.DataFrame, probs: np.ndarray, run: LoadedRun,
                      verdicts: list[Any] | None = None) -> Path:
    """predictions.csv: path, source, patient_id, patient_id_known, label, predicted (stored operating point), correct,
    [predicted_at_0.5], p_<class> for each class, confidence, in_scope, scope_reason."""
    from pneumoscope.metrics.classification import predict_classes

    classes = np.array(run.classes)
    frame = rows[["path", "source", "patient_id", "label"]].copy()
    frame.insert(3, "patient_id_known", rows["patient_id_known"].astype(bool) if "patient_id_known" in rows else True)
    frame["predicted"] = classes[predict_classes(probs, run.threshold)]
    frame["correct"] = frame["predicted"] == frame["label"]
    if len(classes) == 2:
        frame["predicted_at_0.5"] = classes[predict_classes(probs, 0.5)]
    for i, name in enumerate(classes):
        frame[f"p_{name}"] = probs[:, i]
    frame["confidence"] = probs.max(axis=1)
    if verdicts is not None:
        frame["in_scope"] = [v.in_scope for v in verdicts]
        frame["scope_reason"] = [v.reason for v in verdicts]
    return atomic_write(path, lambda handle: frame.to_csv(handle, index=False, float_format="%.6g"))


def write_json(path: Path, value: dict[str, Any]) -> Path:
    """JSON with NaN/inf as null and numpy values as Python values, written atomically."""
    from pneumoscope.metrics.classification import json_ready

    return atomic_write_text(path, json.dumps(json_ready(value), indent=2, default=str) + "\n")


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()}
            for row in frame.to_dict(orient="records")]
