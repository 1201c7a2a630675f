"""``combine_runs``: an ensemble of finished runs of one task, trained on one split, as a new model folder.

The ensemble averages its members' temperature-scaled probabilities (``models.ensemble``). Like a training run, its
operating point is chosen on the validation split the members were selected on (the threshold of the binary task,
with the members' threshold method; no second temperature: each member is already calibrated), and its folder holds
``model.safetensors`` + ``model.json``, the members' manifest and config and a ``summary.json``, so that
``pneumoscope predict``, ``evaluate``, ``export``, ``serve`` and the report take it like any run folder.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pneumoscope.data.populations import manifest_population
from pneumoscope.errors import ConfigError, ModelError
from pneumoscope.files import file_sha256
from pneumoscope.models.meta import WEIGHTS_FILE
from pneumoscope.results import CONFIG_FILE, MANIFEST_FILE, RunRecord, read_run_record
from pneumoscope.training.config import TrainConfig, load_run_config
from pneumoscope.training.finish import model_metadata, validation_operating_point, write_summary


def combine_runs(run_dirs: Sequence[str | Path], out_dir: str | Path) -> Path:
    """Write the mean-probability ensemble of ``run_dirs`` into ``out_dir`` (which must not hold a model yet);
    returns ``out_dir``. ConfigError / ModelError naming the folder when the runs cannot be combined."""
    from pneumoscope.models import load_classifier, save_classifier
    from pneumoscope.models.ensemble import MeanProbabilityEnsemble
    from pneumoscope.models.scoring import forward
    from pneumoscope.training.datamodule import PneumoDataModule

    started = time.perf_counter()
    out = Path(out_dir)
    records = _compatible_records(run_dirs, out)
    config = _ensemble_config(load_run_config(records[0].run_dir))
    loaded = [load_classifier(record.run_dir)[0] for record in records]
    ensemble = MeanProbabilityEnsemble(loaded, [record.meta.temperature for record in records])
    data = PneumoDataModule(records[0].manifest, config)
    images, labels = data.val_arrays()
    logits, _ = forward(ensemble, images)
    operating = validation_operating_point(config, logits, labels)
    operating["val_metrics"]["val_loss"] = float(-np.mean(logits[np.arange(len(labels)), labels]))
    meta = model_metadata(config, operating, epochs=0, population=manifest_population(data.frame))
    meta["training"] = {"ensemble_of": [record.run_dir.name for record in records]}
    meta["members"] = [_member_identity(record) for record in records]
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(records[0].run_dir / MANIFEST_FILE, out / MANIFEST_FILE)
    shutil.copyfile(records[0].run_dir / CONFIG_FILE, out / CONFIG_FILE)
    save_classifier(ensemble, meta, out)
    write_summary(out, {
        "run_dir": str(out.resolve()), "task": config.task, "model": "ensemble",
        "members": [str(record.run_dir.resolve()) for record in records], "epochs": 0,
        "val_metrics": operating["val_metrics"], "threshold": operating["threshold"],
        "threshold_method": operating["threshold_method"], "temperature": operating["temperature"],
        "wall_seconds": round(time.perf_counter() - started, 2), "train_seconds": 0.0, "resumed": False,
    })
    return out


def _compatible_records(run_dirs: Sequence[str | Path], out: Path) -> list[RunRecord]:
    """The members' run files, checked to share task, input and validation split."""
    if len(run_dirs) < 2:
        raise ConfigError("an ensemble needs at least two run folders.", fix="give two or more finished runs.")
    if (out / WEIGHTS_FILE).exists():
        raise ConfigError("this folder already holds a model.", path=out,
                          fix="choose a new --out folder (nothing is overwritten).")
    records = [read_run_record(run_dir) for run_dir in run_dirs]
    if len({record.run_dir.resolve() for record in records}) < len(records):
        raise ConfigError("a run folder is given twice.", fix="give each member once.")
    first = records[0]
    reference_val = _validation_paths(first)
    for record in records[1:]:
        for what, mine, theirs in (("task", record.meta.task, first.meta.task),
                                   ("input size", record.meta.image_size, first.meta.image_size),
                                   ("CLAHE preprocessing", record.meta.clahe, first.meta.clahe)):
            if mine != theirs:
                raise ModelError(f"its {what} ({mine}) differs from {first.run_dir.name}'s ({theirs}).",
                                 path=record.run_dir, fix="combine runs trained for one task on the same input.")
        if _validation_paths(record) != reference_val:
            raise ModelError(f"it was validated on other images than {first.run_dir.name}.", path=record.run_dir,
                             fix="combine runs of one patient-grouped split (the same data and data.split_seed): "
                                 "an ensemble's threshold is chosen on their common validation split.")
    return records


def _validation_paths(record: RunRecord) -> frozenset[str]:
    """The images the run was validated on: the ``val`` rows of what its training read (``trainable_rows``)."""
    from pneumoscope.training.datamodule import trainable_rows

    if record.manifest is None:
        raise ConfigError(f"no {MANIFEST_FILE} in the run folder.", path=record.run_dir,
                          fix="give a run folder written by `pneumoscope train`.")
    rows = trainable_rows(record.manifest, record.meta.task)
    return frozenset(rows.loc[rows["split"].eq("val"), "path"].astype(str))


def _ensemble_config(config: TrainConfig) -> TrainConfig:
    """The first member's config with no temperature refit (each member brings its own)."""
    evaluation = config.evaluation.model_copy(update={"temperature": False})
    return config.model_copy(update={"evaluation": evaluation})


def _member_identity(record: RunRecord) -> dict[str, Any]:
    """What the ensemble's model.json records of a member besides its architecture: where it came from."""
    return {"run": record.run_dir.name, "weights_sha256": file_sha256(record.run_dir / WEIGHTS_FILE),
            "threshold": record.meta.threshold, "val_metrics": record.meta.get("val_metrics")}
