"""A trained run folder opened for evaluation: its model, metadata, resolved config and manifest.

``load_run`` refuses, with one clear error, a folder that is not there, a folder whose training has not finished
(no ``model.safetensors`` yet) and a folder that holds no run at all. ``RunScorer`` scores images with the run's own
preprocessing (``data.preprocess``), temperature and threshold, the way training chose them on validation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pneumoscope.errors import ConfigError, ModelError

WEIGHTS_FILE = "model.safetensors"
META_FILE = "model.json"


@dataclass
class LoadedRun:
    """A run folder's trained model with what evaluation needs to know about how it was trained."""

    run_dir: Path
    model: Any
    meta: dict[str, Any]
    config: dict[str, Any] | None = None
    manifest: pd.DataFrame | None = None
    summary: dict[str, Any] | None = None

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


def load_run(run_dir: str | Path) -> LoadedRun:
    """Open a run folder written by ``pneumoscope train`` (ModelError / ConfigError naming the folder otherwise)."""
    from pneumoscope.models import load_classifier

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError("run folder not found.", path=run_dir, fix="give the folder `pneumoscope train` wrote.")
    if not (run_dir / WEIGHTS_FILE).is_file() or not (run_dir / META_FILE).is_file():
        raise _no_model_error(run_dir)
    model, meta = load_classifier(run_dir)
    if "task" not in meta or "classes" not in meta or "image_size" not in meta:
        raise ModelError("model.json lacks task, classes or image_size.", path=run_dir / META_FILE,
                         fix="re-create the run with `pneumoscope train`.")
    return LoadedRun(run_dir=run_dir, model=model, meta=meta, config=_read_config(run_dir),
                     manifest=_read_manifest(run_dir), summary=_read_json(run_dir / "summary.json"))


def _no_model_error(run_dir: Path) -> ModelError:
    if (run_dir / "checkpoints" / "last.ckpt").is_file():
        return ModelError("training has not finished in this run folder: no model.safetensors yet, only a "
                          "checkpoint of an unfinished run.", path=run_dir,
                          fix=f"finish it with `pneumoscope train --resume {run_dir}`, then evaluate.")
    return ModelError(f"no trained model in this folder ({WEIGHTS_FILE} and {META_FILE} missing).", path=run_dir,
                      fix="give a run folder written by `pneumoscope train` (it holds model.safetensors).")


def _read_config(run_dir: Path) -> dict[str, Any] | None:
    from pneumoscope.training.config import read_yaml

    path = run_dir / "config.yaml"
    return read_yaml(path) if path.is_file() else None


def _read_manifest(run_dir: Path) -> pd.DataFrame | None:
    from pneumoscope.data.manifest import read_manifest

    path = run_dir / "manifest.csv"
    return read_manifest(path, check=True) if path.is_file() else None


def _read_json(path: Path) -> dict[str, Any] | None:
    import json

    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


class RunScorer:
    """Scores images with a run's model: logits, temperature-scaled probabilities, penultimate features."""

    def __init__(self, run: LoadedRun, batch_size: int = 64, device: str = "cpu"):
        self.run = run
        self.batch_size = int(batch_size)
        self.device = device
        self.model = run.model.to(device).eval()

    def logits(self, images: np.ndarray, progress: bool = False, description: str = "scoring",
               features: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Logits ``(N, outputs)`` of uint8 images ``(N, S, S)`` (and pooled penultimate features if asked)."""
        from pneumoscope.models.scoring import forward

        return forward(self.model, images, batch_size=self.batch_size, device=self.device, features=features,
                       progress=progress, description=description)

    def probabilities(self, logits: np.ndarray, temperature: float | None = None) -> np.ndarray:
        """Class probabilities ``(N, K)`` of logits scaled by ``1 / temperature`` (the stored one by default)."""
        from pneumoscope.models.scoring import probabilities

        return probabilities(logits, self.run.temperature if temperature is None else float(temperature))

    def prepare(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Grey images of any size (float in [0, 1] or uint8) → the model's uint8 inputs ``(N, S, S)``."""
        from pneumoscope.data.preprocess import preprocess

        size, clahe = self.run.image_size, self.run.clahe
        return np.stack([preprocess(image, size, clahe=clahe) for image in images]) if len(images) else \
            np.zeros((0, size, size), dtype=np.uint8)

    def predict_fn(self, images: list[np.ndarray]) -> np.ndarray:
        """The robustness package's predict function: grey images at any resolution → probabilities ``(N, K)``."""
        logits, _ = self.logits(self.prepare(images))
        return self.probabilities(logits)
