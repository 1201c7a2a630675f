"""A trained run folder opened for evaluation: its model, metadata, resolved config and manifest.

``load_run`` refuses, with one clear error, a folder that is not there, a folder whose training has not finished
(no ``model.safetensors`` yet) and a folder that holds no run at all. ``RunScorer`` scores images with the run's own
preprocessing (``data.preprocess``), temperature and threshold, the way training chose them on validation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pneumoscope.results import RunFacts, RunRecord, read_run_record


@dataclass
class LoadedRun(RunFacts):
    """A run folder's trained model with what evaluation needs to know about how it was trained."""

    run_dir: Path
    model: Any
    meta: Mapping[str, Any]
    config: dict[str, Any] | None = None
    manifest: pd.DataFrame | None = None
    summary: dict[str, Any] | None = None

    def files(self) -> RunRecord:
        """The run's files without the model (what the report reads)."""
        return RunRecord(run_dir=self.run_dir, meta=self.meta, config=self.config, manifest=self.manifest,
                         summary=self.summary)


def load_run(run_dir: str | Path) -> LoadedRun:
    """Open a run folder written by ``pneumoscope train`` (ModelError / ConfigError naming the folder otherwise)."""
    from pneumoscope.models import load_classifier

    record = read_run_record(run_dir)
    model, _ = load_classifier(record.run_dir)
    return LoadedRun(run_dir=record.run_dir, model=model, meta=record.meta, config=record.config,
                     manifest=record.manifest, summary=record.summary)


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
