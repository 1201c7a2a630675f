"""Patient-grouped, stratified k-fold cross-validation: one model per fold, each scored on its held-out fold.

``cross_validate(config, folds, out_dir)`` writes into ``out_dir``:

- ``config.yaml`` (the resolved config) and ``manifest.csv`` (every image with its ``fold``, from
  ``data.splits.assign_splits(folds=K)``: no patient and no identical image in two folds);
- ``fold-<k>/``: a normal run folder. Its manifest puts fold ``k`` in ``test`` (held out: training never reads it),
  and carves the epoch-selection ``val`` split, patient-grouped, out of the other folds; ``eval-test/`` holds the
  fold's scores on the held-out fold. The archive's own test rows are ``excluded`` (never used by cv);
- ``cv_folds.csv`` (one row per fold), ``cv_summary.csv`` / ``cv_summary.json`` (mean ± std of every metric across
  folds, per class, the pooled confusion matrix of all held-out predictions), ``cv_per_class.csv`` and
  ``cv_report.html``.

Resumable: finished folds are skipped, an interrupted fold continues from its last epoch, and a cv folder holding
another config is refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pneumoscope.errors import ConfigError
from pneumoscope.files import atomic_write, remove_temporaries
from pneumoscope.training.config import TrainConfig

CV_SUMMARY_JSON = "cv_summary.json"
FOLD_EVAL = "eval-test"
# settings that change where a run happens, not what it computes: a resumed cv may change them
_WHERE_KEYS = (("trainer", "device"), ("data", "num_workers"))


def fold_dir(out_dir: Path, k: int) -> Path:
    return Path(out_dir) / f"fold-{k}"


def is_finished(out_dir: str | Path) -> bool:
    """True when the cv folder holds its summary (written last)."""
    return (Path(out_dir) / CV_SUMMARY_JSON).is_file()


def cross_validate(config: TrainConfig, folds: int, out_dir: str | Path, *, progress: bool = True,
                   n_boot: int = 200, on_epoch: Callable | None = None) -> Path:
    """Train and score one model per fold (see the module docstring); returns ``out_dir``."""
    from pneumoscope.progress import status_line

    if int(folds) < 2:
        raise ConfigError(f"--folds {folds} must be at least 2.", fix="use e.g. --folds 5.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_temporaries(out_dir)  # what a killed earlier attempt was writing (fold folders: train cleans them)
    check_same_config(config, out_dir)
    manifest = cv_manifest(config, folds, out_dir)
    fold_metrics = []
    for k in range(folds):
        status_line(f"fold {k + 1} of {folds}")
        fold_metrics.append(run_fold(config, manifest, k, out_dir, progress, n_boot, on_epoch))
    summarise(fold_metrics, config, out_dir)
    return out_dir


def check_same_config(config: TrainConfig, out_dir: Path) -> None:
    """Save the config in a new cv folder; refuse a folder that holds a cv of another config."""
    from pneumoscope.training.config import read_yaml, save_config

    saved = out_dir / "config.yaml"
    if not saved.is_file():
        save_config(config, saved)
        return
    if not same_config(read_yaml(saved), config):
        raise ConfigError("this folder holds a cross-validation of another config.", path=out_dir,
                          fix="use another --out, or delete the folder to start again.")


def same_config(saved: dict[str, Any], config: TrainConfig) -> bool:
    """True when a saved config computes the same as ``config`` (device, data-loader workers and where the run is
    tracked may differ)."""
    return _what(saved) == _what(config.to_dict())


def _what(values: dict[str, Any]) -> dict[str, Any]:
    values = json.loads(json.dumps(values))
    for section, key in _WHERE_KEYS:
        values.get(section, {}).pop(key, None)
    values.pop("tracking", None)
    return values


def cv_manifest(config: TrainConfig, folds: int, out_dir: Path) -> pd.DataFrame:
    """The manifest with a ``fold`` column: read back from ``out_dir/manifest.csv``, else built and saved."""
    from pneumoscope.data.manifest import build_manifest, read_manifest, write_manifest
    from pneumoscope.data.splits import assign_splits
    from pneumoscope.training.run import subsample_task

    saved = out_dir / "manifest.csv"
    if saved.is_file():
        manifest = read_manifest(saved, check=True)
        found = sorted(set(manifest["fold"]) - {-1})
        if found != list(range(folds)):
            raise ConfigError(f"this cv folder was split into {len(found)} folds, not {folds}.", path=out_dir,
                              fix=f"pass --folds {len(found)}, or use another --out.")
        return manifest
    if not config.data.paths:
        raise ConfigError("no data given.", fix="pass --data PATH or data.paths in the config.")
    manifest = build_manifest(config.data.paths)
    if config.data.max_images is not None:
        manifest = subsample_task(manifest, config.task, config.data.max_images, config.seed)
    manifest = assign_splits(manifest, config.task, config.data.val_fraction, config.seed, folds=folds)
    write_manifest(manifest, saved)
    return manifest


def fold_manifest(manifest: pd.DataFrame, k: int, config: TrainConfig) -> pd.DataFrame:
    """Fold ``k`` held out as ``test``; ``train`` / ``val`` carved (patient-grouped) from the other folds; every
    other row ``excluded``. The cv fold number is kept in ``cv_fold``; ``fold`` is -1."""
    from pneumoscope.data.splits import assign_splits, check_leakage

    table = manifest.copy()
    fold = pd.to_numeric(table["fold"], errors="coerce").fillna(-1).astype(int)
    pool = (fold >= 0) & (fold != k)
    inner = assign_splits(table.loc[pool], config.task, config.data.val_fraction, config.seed)
    table["cv_fold"] = fold
    table["split"] = "excluded"
    table.loc[pool, "split"] = inner["split"]
    table.loc[fold == k, "split"] = "test"
    table["fold"] = -1
    check_leakage(table)
    return table


def run_fold(config: TrainConfig, manifest: pd.DataFrame, k: int, out_dir: Path, progress: bool, n_boot: int,
             on_epoch: Callable | None) -> dict[str, Any]:
    """Train fold ``k`` (or resume it, or skip it when done) and score it on its held-out rows."""
    from pneumoscope.evaluation.evaluate import evaluate
    from pneumoscope.progress import status_line
    from pneumoscope.results import read_metrics
    from pneumoscope.training.resume import is_finished as run_finished
    from pneumoscope.training.resume import last_checkpoint, resume
    from pneumoscope.training.run import train

    folder = fold_dir(out_dir, k)
    scores = folder / FOLD_EVAL
    if (scores / "metrics.json").is_file():
        status_line(f"fold {k}: finished, skipped")
        return read_metrics(scores)
    if not run_finished(folder):
        if last_checkpoint(folder) is not None:
            status_line(f"fold {k}: resuming from its last epoch")
            resume(folder, progress=progress, on_epoch=on_epoch)
        else:
            train(config, folder, progress=progress, on_epoch=on_epoch, manifest=fold_manifest(manifest, k, config))
    evaluate(folder, split="test", out=scores, proxies=False, report=False, n_boot=n_boot, progress=progress)
    return read_metrics(scores)


def _write_csv(frame: pd.DataFrame, path: Path) -> Path:
    return atomic_write(path, lambda handle: frame.to_csv(handle, index=False, float_format="%.6g"))


def summarise(fold_metrics: list[dict[str, Any]], config: TrainConfig, out_dir: Path) -> dict[str, Any]:
    """cv_folds.csv, cv_summary.csv/.json, cv_per_class.csv and cv_report.html from the folds' metrics.json."""
    from pneumoscope.evaluation.evaluate import write_json
    from pneumoscope.metrics.tables import flatten_metrics, fold_summary, pooled_confusion

    metrics = [m["metrics"] for m in fold_metrics]
    classes = metrics[0]["classes"]
    per_fold = pd.DataFrame([{"fold": k, "n": m["n"], **flatten_metrics(m)} for k, m in enumerate(metrics)])
    _write_csv(per_fold, out_dir / "cv_folds.csv")
    summary = fold_summary(metrics)
    _write_csv(summary.rename_axis("metric").reset_index(), out_dir / "cv_summary.csv")
    per_class = per_class_summary(summary, classes)
    _write_csv(per_class, out_dir / "cv_per_class.csv")
    pooled = pooled_confusion(metrics)
    result = {
        "task": config.task, "model": config.model.name, "folds": len(metrics), "classes": classes,
        "n_per_fold": [int(m["n"]) for m in metrics],
        "summary": {name: {"mean": _num(row["mean"]), "std": _num(row["std"]), "n_folds": int(row["n_folds"])}
                    for name, row in summary.iterrows()},
        "pooled_confusion_matrix": pooled,
        "pooled_accuracy": float(np.trace(np.asarray(pooled)) / max(np.sum(pooled), 1)),
        "fold_metrics": [f"fold-{k}/{FOLD_EVAL}/metrics.json" for k in range(len(metrics))],
    }
    write_json(out_dir / CV_SUMMARY_JSON, result)
    write_cv_report(result, per_fold, per_class, config, out_dir)
    return result


def per_class_summary(summary: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """One row per class: mean and std (``{metric}_std``) of precision, sensitivity, specificity, F1, AUCs."""
    from pneumoscope.metrics.tables import PER_CLASS_METRICS, STD_SUFFIX

    rows = []
    for name in classes:
        row: dict[str, Any] = {"class": name}
        for metric in PER_CLASS_METRICS:
            key = f"{name}_{metric}"
            row[metric] = summary.at[key, "mean"] if key in summary.index else np.nan
            row[metric + STD_SUFFIX] = summary.at[key, "std"] if key in summary.index else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def write_cv_report(result: dict[str, Any], per_fold: pd.DataFrame, per_class: pd.DataFrame, config: TrainConfig,
                    out_dir: Path) -> Path:
    """cv_report.html: mean ± std, per class, per fold, the pooled confusion matrix and the config."""
    from pneumoscope.metrics.tables import STD_SUFFIX
    from pneumoscope.report.html import write_report
    from pneumoscope.report.plots import plot_confusion_matrix

    headline = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "pr_auc")
    overall = pd.DataFrame([{**{k: result["summary"][k]["mean"] for k in headline},
                             **{k + STD_SUFFIX: result["summary"][k]["std"] for k in headline}}]).astype(float)
    sections = {
        "extra": [
            {"title": "Mean ± std across folds", "table": overall,
             "text": f"{result['folds']}-fold patient-grouped, stratified cross-validation. Each fold's model chose "
                     "its epoch, threshold and temperature on a validation split carved from the other folds; "
                     "the held-out fold was never read in training.",
             "note": f"Images per held-out fold: {', '.join(str(n) for n in result['n_per_fold'])}."},
            {"title": "Per class (mean ± std)", "table": per_class},
            {"title": "Per fold", "table": per_fold},
            {"title": "Pooled confusion matrix",
             "png": plot_confusion_matrix(result["pooled_confusion_matrix"], result["classes"]),
             "note": f"All held-out predictions together (pooled accuracy {result['pooled_accuracy']:.3f})."},
            {"title": "Configuration", "pre": config_text(config)},
        ],
    }
    return write_report(sections, out_dir / "cv_report.html", title=f"Cross-validation of {config.model.name}",
                        meta={"task": config.task, "model": config.model.name, "folds": result["folds"],
                              "preset": config.preset}, kind="cross-validation report")


def config_text(config: TrainConfig) -> str:
    from pneumoscope.training.config import config_to_yaml

    return config_to_yaml(config)


def read_fold_metrics(out_dir: str | Path) -> list[dict[str, Any]]:
    """The ``metrics`` of every fold of a finished cv folder (for comparisons)."""
    result = json.loads((Path(out_dir) / CV_SUMMARY_JSON).read_text(encoding="utf-8"))
    return [json.loads((Path(out_dir) / rel).read_text(encoding="utf-8"))["metrics"]
            for rel in result["fold_metrics"]]


def _num(value: Any) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)
