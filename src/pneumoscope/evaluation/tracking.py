"""Results logged to a tracked run (``training.tracking``): an evaluation (headline metrics with their 95 % CIs,
calibration, generalisation proxies, stress test; metrics.json, the report and the predictions), the run's model
card, a comparison.

Metric names carry the evaluation folder's name, e.g. ``eval-val/accuracy``, ``eval-val/accuracy_ci_low``,
``eval-test-chest_xray/sensitivity_pneumonia_ci_high``, so that several evaluations of one run sit side by side.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pneumoscope.results import METRICS_JSON, PREDICTIONS_CSV, REPORT_HTML, read_metrics
from pneumoscope.training.tracking import is_number, open_tracked_run

MODEL_CARD = "MODEL_CARD.md"


def evaluation_figures(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of a metrics.json worth tracking, flat: headline figures with ``_ci_low`` / ``_ci_high``, per
    class, calibration, proxies and stress-test summaries (figures that are missing or skipped are left out)."""
    headline = metrics.get("headline") or {}
    figures: dict[str, Any] = {}
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc"):
        _with_ci(figures, key, headline.get(key))
    for cls, values in (headline.get("per_class") or {}).items():
        for metric, entry in values.items():
            _with_ci(figures, f"{metric}_{cls}", entry)
    calibration = metrics.get("calibration") or {}
    figures.update(ece=calibration.get("ece"), brier=calibration.get("brier"),
                   temperature=calibration.get("temperature"), n_images=(metrics.get("data") or {}).get("n"))
    robustness = metrics.get("robustness") or {}
    unseen = robustness.get("unseen_site_normals") or {}
    figures.update({"unseen_site_normals/specificity": unseen.get("specificity"),
                    "unseen_site_normals/specificity_ci_low": unseen.get("specificity_ci_low"),
                    "unseen_site_normals/specificity_ci_high": unseen.get("specificity_ci_high"),
                    "unseen_site_normals/mean_p_pneumonia": unseen.get("mean_p_pneumonia")})
    resolution = robustness.get("resolution_consistency") or {}
    figures.update({"resolution_consistency/agreement": resolution.get("agreement"),
                    "resolution_consistency/mean_abs_delta_p": resolution.get("mean_abs_delta_p")})
    stress = robustness.get("stress_test") or {}
    figures.update({"stress_test/clean_accuracy": stress.get("clean_accuracy"),
                    "stress_test/mean_accuracy_shifted": stress.get("mean_accuracy_shifted"),
                    "stress_test/worst_accuracy": (stress.get("worst") or {}).get("accuracy")})
    return {key: value for key, value in figures.items() if is_number(value)}


def log_evaluation(run_dir: str | Path, eval_dir: str | Path) -> None:
    """Log the evaluation in ``eval_dir`` to the tracked run ``run_dir``: its figures (prefixed with the folder's
    name) and metrics.json, report.html and predictions.csv (under the same name)."""
    eval_dir = Path(eval_dir)
    figures = evaluation_figures(read_metrics(eval_dir))
    with open_tracked_run(run_dir) as run:
        run.log_metrics({f"{eval_dir.name}/{key}": value for key, value in figures.items()})
        for name in (METRICS_JSON, REPORT_HTML, PREDICTIONS_CSV):
            if (eval_dir / name).is_file():
                run.log_file(eval_dir / name, eval_dir.name)


def model_card(run_dir: str | Path, eval_dir: str | Path | None = None) -> str:
    """The run's model card (Markdown): model.json, the config and manifest, and, from an evaluation of its
    validation split, the bootstrap CIs and the proxies."""
    import json

    from pneumoscope.inference.bundled import render_model_card

    run_dir = Path(run_dir)
    meta = json.loads((run_dir / "model.json").read_text(encoding="utf-8"))
    evaluation: dict[str, Any] = {}
    if eval_dir is not None:
        metrics = read_metrics(eval_dir)
        evaluation["validation"] = {"ci": metrics["headline"]}
        robustness = metrics.get("robustness") or {}
        for key, needed in (("unseen_site_normals", "specificity"), ("resolution_consistency", "agreement")):
            if (robustness.get(key) or {}).get(needed) is not None:
                evaluation[key] = robustness[key]
    return render_model_card(meta, run_dir.resolve().name, run_dir, evaluation)


def log_model_card(run_dir: str | Path, eval_dir: str | Path | None = None) -> None:
    """Log the run's model card (``model_card``) to its tracked run as MODEL_CARD.md."""
    card = model_card(run_dir, eval_dir)
    with open_tracked_run(run_dir) as run:
        run.log_text(MODEL_CARD, card)


def log_comparison(run_dir: str | Path, files: Mapping[str, Path]) -> None:
    """Log a comparison's files (comparison.csv / .md / .html) to the tracked run ``run_dir``, under
    ``comparison/``."""
    with open_tracked_run(run_dir) as run:
        for path in files.values():
            run.log_file(Path(path), "comparison")


def _with_ci(figures: dict[str, Any], name: str, entry: Any) -> None:
    if not isinstance(entry, Mapping):
        return
    figures[name] = entry.get("value")
    figures[f"{name}_ci_low"] = entry.get("low")
    figures[f"{name}_ci_high"] = entry.get("high")

