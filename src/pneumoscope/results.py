"""The files a run and its evaluations leave behind, named and read in one place.

Training writes the run folder (``model.json``, ``config.yaml``, ``manifest.csv``, ``metrics.csv``,
``summary.json``), ``pneumoscope evaluate`` an evaluation folder inside it (``eval-*``: ``metrics.json``,
``predictions.csv``, the robustness files, the model figures), ``pneumoscope robustness`` a ``robustness`` folder.
The report and the comparisons only read these files (``RunRecord``, ``read_metrics``, ...), so they never need the
model or the code that scored it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pneumoscope.errors import DataError, ModelError, PneumoscopeError
from pneumoscope.models.meta import META_FILE, WEIGHTS_FILE, read_model_meta

CONFIG_FILE = "config.yaml"
MANIFEST_FILE = "manifest.csv"
EPOCH_METRICS_CSV = "metrics.csv"
SUMMARY_FILE = "summary.json"
EVAL_PREFIX = "eval-"
METRICS_JSON = "metrics.json"
PREDICTIONS_CSV = "predictions.csv"
REPORT_HTML = "report.html"
ROBUSTNESS_DIR = "robustness"
ROBUSTNESS_JSON = "robustness.json"
STRESS_CSV = "robustness.csv"
GRADCAM_ERRORS_PNG = "gradcam_errors.png"
FILTERS_PNG = "filters.png"
FEATURE_MAPS_PNG = "feature_maps.png"
FIGURES_JSON = "figures.json"


class RunFacts:
    """What a run folder's files say about how its model was trained (``meta``: model.json as a mapping)."""

    run_dir: Path
    meta: Mapping[str, Any]
    manifest: pd.DataFrame | None

    @property
    def task(self) -> str:
        return str(self.meta["task"])

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.meta["classes"]]

    @property
    def image_size(self) -> int:
        return int(self.meta["image_size"])

    @property
    def clahe(self) -> bool:
        return bool((self.meta.get("preprocessing") or {}).get("clahe", False))

    @property
    def threshold(self) -> float | None:
        """The stored binary operating threshold on p(pneumonia) (None for multi-class models)."""
        value = self.meta.get("threshold")
        return None if value is None or len(self.classes) != 2 else float(value)

    @property
    def temperature(self) -> float:
        return float(self.meta.get("temperature") or 1.0)

    def rows(self, split: str) -> pd.DataFrame:
        """The run manifest's readable rows of ``split`` that belong to the run's task."""
        if self.manifest is None:
            return pd.DataFrame()
        from pneumoscope.tasks import label_column

        frame = self.manifest
        keep = frame["split"].eq(split) & frame[label_column(self.task)].fillna("").astype(str).ne("")
        if "status" in frame.columns:
            keep &= frame["status"].fillna("ok").eq("ok")
        return frame.loc[keep].reset_index(drop=True)

    def trained_sources(self) -> set[str]:
        """Sources of the images the model was fitted or selected on (train and val rows)."""
        if self.manifest is None:
            return set()
        return set(self.rows("train")["source"]) | set(self.rows("val")["source"])

    def trained_fine_labels(self) -> set[str] | None:
        """Fine labels (normal, bacteria, virus, covid, ...) of the train/val images; None without a manifest."""
        if self.manifest is None:
            return None
        return set(self.rows("train")["fine_label"]) | set(self.rows("val")["fine_label"])

    def trained_on_kermany(self) -> bool:
        """True when the run's train/val images come from the Kermany archive only."""
        return self.trained_sources() == {"kermany"}

    def describe(self) -> dict[str, Any]:
        """Model facts for metrics.json and the report."""
        return {"run_dir": str(self.run_dir.resolve()), "architecture": self.meta.get("architecture"),
                "task": self.task, "classes": self.classes, "image_size": self.image_size, "clahe": self.clahe,
                "threshold": self.threshold, "threshold_method": self.meta.get("threshold_method"),
                "temperature": self.temperature, "val_metrics": self.meta.get("val_metrics")}


@dataclass
class RunRecord(RunFacts):
    """A finished run folder's files, without its model."""

    run_dir: Path
    meta: Mapping[str, Any]
    config: dict[str, Any] | None = None
    manifest: pd.DataFrame | None = None
    summary: dict[str, Any] | None = None


def read_run_record(run_dir: str | Path) -> RunRecord:
    """The files of a run folder written by ``pneumoscope train`` (ModelError / ConfigError naming the folder if it
    is missing, unfinished or not a run)."""
    from pneumoscope.errors import ConfigError

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError("run folder not found.", path=run_dir, fix="give the folder `pneumoscope train` wrote.")
    if not (run_dir / WEIGHTS_FILE).is_file() or not (run_dir / META_FILE).is_file():
        raise _no_model_error(run_dir)
    meta = read_model_meta(run_dir)
    if meta.task is None:
        raise ModelError("model.json lacks task, classes or image_size.", path=run_dir / META_FILE,
                         fix="re-create the run with `pneumoscope train`.")
    return RunRecord(run_dir=run_dir, meta=meta, config=_read_config(run_dir), manifest=_read_manifest(run_dir),
                     summary=_read_json(run_dir / SUMMARY_FILE))


def _no_model_error(run_dir: Path) -> ModelError:
    if (run_dir / "checkpoints" / "last.ckpt").is_file():
        return ModelError("training has not finished in this run folder: no model.safetensors yet, only a "
                          "checkpoint of an unfinished run.", path=run_dir,
                          fix=f"finish it with `pneumoscope train --resume {run_dir}`, then evaluate.")
    return ModelError(f"no trained model in this folder ({WEIGHTS_FILE} and {META_FILE} missing).", path=run_dir,
                      fix="give a run folder written by `pneumoscope train` (it holds model.safetensors).")


def _read_config(run_dir: Path) -> dict[str, Any] | None:
    from pneumoscope.files import read_yaml

    path = run_dir / CONFIG_FILE
    return read_yaml(path) if path.is_file() else None


def _read_manifest(run_dir: Path) -> pd.DataFrame | None:
    from pneumoscope.data.manifest import read_manifest

    path = run_dir / MANIFEST_FILE
    return read_manifest(path, check=True) if path.is_file() else None


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


# ------------------------------------------------------------------------------------------- evaluation folders
def read_predictions(eval_dir: str | Path, classes: Sequence[str]) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """predictions.csv of an evaluation folder: the frame, labels as class indices, probabilities ``(N, K)``."""
    path = Path(eval_dir) / PREDICTIONS_CSV
    if not path.is_file():
        raise DataError("no predictions.csv in this evaluation folder.", path=Path(eval_dir),
                        fix="run `pneumoscope evaluate` first.")
    frame = pd.read_csv(path, keep_default_na=False)
    index = {c: i for i, c in enumerate(classes)}
    probs = frame[[f"p_{c}" for c in classes]].to_numpy(dtype=np.float64)
    probs /= probs.sum(axis=1, keepdims=True)
    return frame, frame["label"].astype(str).map(index).to_numpy(dtype=np.int64), probs


def read_metrics(eval_dir: str | Path) -> dict[str, Any]:
    """metrics.json of an evaluation folder."""
    path = Path(eval_dir) / METRICS_JSON
    if not path.is_file():
        raise DataError("no metrics.json in this folder.", path=Path(eval_dir), fix="run `pneumoscope evaluate`.")
    return json.loads(path.read_text(encoding="utf-8"))


def eval_folders(run_dir: str | Path) -> list[Path]:
    """The run's evaluation folders (``eval-*`` holding metrics.json), oldest first."""
    found = [p for p in Path(run_dir).glob(f"{EVAL_PREFIX}*") if (p / METRICS_JSON).is_file()]
    return sorted(found, key=lambda p: (p / METRICS_JSON).stat().st_mtime)


def read_robustness(folder: str | Path) -> tuple[dict[str, Any], pd.DataFrame | None] | None:
    """robustness.json and the stress table of ``folder``, or None where no robustness check ran there."""
    folder = Path(folder)
    path = folder / ROBUSTNESS_JSON
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise PneumoscopeError("robustness.json is not valid JSON.", path=path,
                               fix="re-run `pneumoscope robustness` or `pneumoscope evaluate`.") from None
    table = pd.read_csv(folder / STRESS_CSV) if (folder / STRESS_CSV).is_file() else None
    return result, table


def read_figure_notes(eval_dir: str | Path) -> dict[str, Any]:
    """What ``evaluation.figures`` wrote beside its figures (captions, notes, why a figure is missing)."""
    path = Path(eval_dir) / FIGURES_JSON
    return _read_json(path) or {}
