"""``model.json``, the metadata saved beside every model's weights, read and validated in one place.

Training writes it (``training.finish.model_metadata`` builds it, ``models.io.save_classifier`` stores it); run
folders, bundled models and ONNX exports (their ``pneumoscope`` metadata entry) carry it. ``ModelMeta`` is the typed
view every reader uses: the classes, the input size, the task, the preprocessing, the stored threshold and
temperature; ``raw`` keeps every key, those of newer versions included.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pneumoscope.errors import ModelError
from pneumoscope.tasks import TASK_CLASSES

WEIGHTS_FILE = "model.safetensors"
META_FILE = "model.json"
REQUIRED_KEYS = ("classes", "image_size")
_FIX = "re-create it with `pneumoscope train` or `pneumoscope export`."


@dataclass(frozen=True)
class ModelMeta(Mapping[str, Any]):
    """What every consumer of a model needs to know about it, validated (``from_dict``); as a mapping it is the
    stored metadata itself (``meta["architecture"]``, ``meta.get("val_metrics")``)."""

    classes: tuple[str, ...] = field(metadata={"description": "Class names, in the order of the model's outputs."})
    image_size: int = field(metadata={"description": "Side of the square grey input, in pixels."})
    task: str | None = field(default=None, metadata={"description": "binary, 3class or 4class."})
    clahe: bool = field(default=False, metadata={"description": "Whether inputs are contrast-equalised (CLAHE)."})
    threshold: float | None = field(default=None, metadata={
        "description": "Binary models: p(positive class) from which it is called (chosen on validation)."})
    temperature: float = field(default=1.0, metadata={
        "description": "Logits are divided by it before the softmax (calibrated on validation)."})
    raw: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, meta: Mapping[str, Any], source: str | Path) -> ModelMeta:
        """Validate ``meta`` (ModelError naming ``source`` and the missing or bad key). A binary model without a
        stored threshold decides at 0.5; multi-class models have none."""
        if not isinstance(meta, Mapping):
            raise ModelError("model metadata is not a JSON object.", path=source, fix=_FIX)
        missing = [key for key in REQUIRED_KEYS if key not in meta]
        if missing:
            raise ModelError(f"model metadata lacks {', '.join(missing)}.", path=source, fix=_FIX)
        classes = meta["classes"]
        if not isinstance(classes, list | tuple) or len(classes) < 2 or not all(isinstance(c, str) for c in classes):
            raise ModelError(f"model metadata has invalid classes {classes!r}.", path=source, fix=_FIX)
        try:
            image_size = int(meta["image_size"])
            temperature = float(meta.get("temperature") or 1.0)
            threshold = meta.get("threshold")
            threshold = None if threshold is None else float(threshold)
        except (TypeError, ValueError) as error:
            raise ModelError(f"model metadata has an invalid value ({error}).", path=source, fix=_FIX) from None
        if image_size < 8 or temperature <= 0 or (threshold is not None and not 0.0 <= threshold <= 1.0):
            raise ModelError("model metadata has an out-of-range image_size, temperature or threshold.",
                             path=source, fix=_FIX)
        task = meta.get("task")
        if task is not None:
            if task not in TASK_CLASSES:
                raise ModelError(f"model was made for task {task!r}, which pneumoscope does not predict.",
                                 path=source, fix=f"use a classifier for one of: {', '.join(TASK_CLASSES)}.")
            if tuple(classes) != TASK_CLASSES[task]:
                raise ModelError(f"model classes {list(classes)} do not match task {task!r}.", path=source, fix=_FIX)
        if len(classes) == 2 and threshold is None:
            threshold = 0.5
        return cls(classes=tuple(classes), image_size=image_size, task=task,
                   clahe=bool((meta.get("preprocessing") or {}).get("clahe", False)),
                   threshold=threshold if len(classes) == 2 else None, temperature=temperature, raw=dict(meta))

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)

    @property
    def architecture(self) -> str | None:
        value = self.raw.get("architecture")
        return None if value is None else str(value)


def read_meta_file(path: str | Path) -> dict[str, Any]:
    """The JSON object in a ``model.json`` file (ModelError naming the file if it is unreadable)."""
    path = Path(path)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelError(f"cannot read the model metadata ({error}).", path=path,
                         fix="re-create it with `pneumoscope train`.") from None
    if not isinstance(meta, dict):
        raise ModelError("model.json does not hold a JSON object.", path=path,
                         fix="re-create it with `pneumoscope train`.")
    return meta


def read_model_meta(folder: str | Path) -> ModelMeta:
    """The validated ``model.json`` of a run folder or bundled model folder."""
    path = Path(folder) / META_FILE
    return ModelMeta.from_dict(read_meta_file(path), path)
