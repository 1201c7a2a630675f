"""The generalisation checks of one trained run, run together: the acquisition-shift stress test on a bounded,
patient-grouped subset of the run's validation split, and the two proxies (unseen-site normals, resolution
consistency) where they mean something: a binary or 3-class model trained on Kermany images only.

``run_robustness`` writes into ``out_dir``: ``robustness.json`` (settings, model, summaries, skipped checks with
the reason), ``robustness.csv`` (the stress-test table), ``unseen_site_normals.csv`` and
``resolution_consistency.csv`` (per image).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pneumoscope.errors import DataError
from pneumoscope.files import atomic_write, atomic_write_text
from pneumoscope.inference.runs import LoadedRun, RunScorer
from pneumoscope.results import ROBUSTNESS_JSON, STRESS_CSV
from pneumoscope.robustness.perturbations import SEVERITIES
from pneumoscope.robustness.stress import stress_test, summary_by_kind

DEFAULT_SEVERITIES: tuple[int, ...] = (1, 3, 5)
DEFAULT_STRESS_IMAGES = 100
PROXY_TASKS = ("binary", "3class")
UNSEEN_CSV = "unseen_site_normals.csv"
RESOLUTION_CSV = "resolution_consistency.csv"


def proxies_apply(run: LoadedRun) -> tuple[bool, str]:
    """Whether the issue-5 proxies apply to ``run`` and, if not, why."""
    if run.task not in PROXY_TASKS:
        return False, f"the proxies are defined for binary and 3-class models, not {run.task}"
    if run.manifest is None:
        return False, "the run folder has no manifest.csv, so what the model was trained on is unknown"
    if not run.trained_on_kermany():
        sources = ", ".join(sorted(run.trained_sources())) or "none"
        return False, f"the model was not trained on Kermany images only (sources: {sources})"
    return True, ""


def parse_severities(text: str | Sequence[int] | None) -> tuple[int, ...]:
    """``"1,3,5"`` / ``"1 3 5"`` / a list → a checked tuple of severities."""
    from pneumoscope.errors import ConfigError

    if text is None:
        return DEFAULT_SEVERITIES
    parts = text.replace(",", " ").split() if isinstance(text, str) else list(text)
    try:
        values = tuple(sorted({int(p) for p in parts}))
    except ValueError:
        raise ConfigError(f"severities {text!r} are not whole numbers.", fix="e.g. --severities 1,3,5") from None
    if not values or any(v not in SEVERITIES for v in values):
        raise ConfigError(f"severities {text!r} must be among {list(SEVERITIES)}.", fix="e.g. --severities 1,3,5")
    return values


def stress_images(run: LoadedRun, max_images: int, seed: int = 0) -> tuple[list[np.ndarray], list[str], pd.DataFrame]:
    """A patient-grouped, class-stratified subset (≤ about ``max_images``) of the run's validation images,
    decoded at their stored resolution, with their class names and manifest rows."""
    from pneumoscope.data.imaging import load_image
    from pneumoscope.data.splits import subsample_patients
    from pneumoscope.tasks import label_column

    rows = run.rows("val")
    if rows.empty:
        raise DataError("the run has no validation images to stress-test (manifest.csv has no val rows).",
                        path=run.run_dir, fix="give a run folder written by `pneumoscope train`.")
    rows = rows.assign(label=rows[label_column(run.task)].astype(str))
    rows = subsample_patients(rows, "label", max_images, seed)
    rows = rows.sort_values("path").reset_index(drop=True)
    return [load_image(p) for p in rows["path"]], rows["label"].tolist(), rows


def run_robustness(run: LoadedRun, out_dir: str | Path, *, data_root: str | Path | None = None,
                   max_images: int = DEFAULT_STRESS_IMAGES, severities: Sequence[int] = DEFAULT_SEVERITIES,
                   perturbations: Sequence[str] | None = None, proxy_images: int | None = None,
                   proxies: bool = True, strict: bool = False, seed: int = 0, device: str = "cpu",
                   progress: bool = True) -> dict[str, Any]:
    """Stress test + proxies of ``run``; writes the files of the module docstring and returns robustness.json.

    ``strict``: a missing proxy folder is an error (as for ``pneumoscope robustness``) rather than a skipped check
    with its reason (as inside ``pneumoscope evaluate``).
    """

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scorer = RunScorer(run, device=device)
    images, labels, rows = stress_images(run, max_images, seed)
    table = stress_test(images, labels, scorer.predict_fn, run.classes, perturbations=perturbations,
                        severities=tuple(severities), seed=seed, threshold=run.threshold, progress=progress)
    _write_csv(table, out_dir / STRESS_CSV)
    result: dict[str, Any] = {
        "settings": {"max_images": int(max_images), "severities": list(severities), "seed": int(seed),
                     "perturbations": list(perturbations) if perturbations else "all",
                     "proxy_images": proxy_images, "data_root": str(_root(data_root))},
        "model": run.describe(),
        "stress_test": _stress_summary(table, rows),
    }
    applies, reason = proxies_apply(run)
    if not proxies:
        applies, reason = False, "not asked for (--no-proxies)"
    for name, compute in (("unseen_site_normals", _unseen), ("resolution_consistency", _resolution)):
        if not applies:
            result[name] = {"skipped": reason}
            continue
        result[name] = compute(run, scorer, data_root, proxy_images, out_dir, strict, seed, progress)
    atomic_write_text(out_dir / ROBUSTNESS_JSON, json.dumps(_clean(result), indent=2) + "\n")
    return _clean(result)


def _root(data_root: str | Path | None) -> Path:
    from pneumoscope.paths import data_root as default_root

    return Path(data_root) if data_root is not None else default_root()


def _stress_summary(table: pd.DataFrame, rows: pd.DataFrame) -> dict[str, Any]:
    clean = table.iloc[0]
    shifted = table.iloc[1:]
    worst = shifted.loc[shifted["accuracy"].idxmin()] if not shifted.empty else clean
    summary = {"file": STRESS_CSV, "n_images": len(rows), "n_patients": int(rows["patient_id"].nunique()),
               "images_from": "the run's validation split", "clean_accuracy": float(clean["accuracy"]),
               "clean_specificity": float(clean["specificity"]),
               "worst": {"perturbation": str(worst["perturbation"]), "severity": int(worst["severity"]),
                         "accuracy": float(worst["accuracy"]), "specificity": float(worst["specificity"])}}
    if not shifted.empty:
        summary["mean_accuracy_shifted"] = float(shifted["accuracy"].mean())
        summary["mean_specificity_shifted"] = float(shifted["specificity"].mean())
        summary["by_kind"] = summary_by_kind(table)
    return summary


def _unseen(run, scorer, data_root, proxy_images, out_dir, strict, seed, progress) -> dict[str, Any]:
    from pneumoscope.robustness.proxies import unseen_site_normals

    try:
        summary, per_image = unseen_site_normals(scorer.predict_fn, _root(data_root), run.classes,
                                                 threshold=run.threshold, limit=proxy_images, seed=seed,
                                                 progress=progress)
    except DataError as error:
        if strict:
            raise
        return {"skipped": str(error)}
    _write_csv(per_image, out_dir / UNSEEN_CSV)
    return {**summary, "file": UNSEEN_CSV}


def _resolution(run, scorer, data_root, proxy_images, out_dir, strict, seed, progress) -> dict[str, Any]:
    from pneumoscope.robustness.proxies import resolution_consistency

    try:
        summary, per_image = resolution_consistency(scorer.predict_fn, _root(data_root), run.classes,
                                                    threshold=run.threshold, progress=progress)
    except DataError as error:
        if strict:
            raise
        return {"skipped": str(error)}
    _write_csv(per_image, out_dir / RESOLUTION_CSV)
    return {**summary, "file": RESOLUTION_CSV}


def _clean(value: Any) -> Any:
    from pneumoscope.metrics.classification import json_ready

    return json_ready(value)


def _write_csv(frame: pd.DataFrame, path: Path) -> Path:
    return atomic_write(path, lambda handle: frame.to_csv(handle, index=False))

