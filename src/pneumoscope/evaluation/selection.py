"""Which images an evaluation scores: a split of any labelled data, checked against the model and its training.

- ``test``: the data's official test rows (``official_split == "test"``), or the run manifest's ``test`` rows.
- ``val``: the run's own validation split (it chose the epoch, threshold and temperature: an optimistic estimate).
- ``all``: every labelled image of the data.
- ``auto``: ``test`` where the data has a test split, else ``all``.

Whatever the split, images the model was trained on (same file content or same known patient as a ``train`` row of
the run) are left out and counted, unreadable files are left out and counted, and labels the model cannot score are
an error (or, with ``skip_unknown``, left out and counted): never a silent wrong answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pneumoscope.data.splits import subsample_patients
from pneumoscope.errors import ConfigError, DataError, ModelError
from pneumoscope.inference.runs import LoadedRun
from pneumoscope.tasks import label_column

SPLITS = ("auto", "val", "test", "all")
# Fine labels a model must have seen in training before it can be scored on them: a binary Kermany model maps
# COVID-19 onto "pneumonia" only by the task table, never by what it learnt.
NEEDS_TRAINING = ("covid",)
FINE_LABEL_NAMES = {"pneumonia": "pneumonia (cause unknown)", "lung_opacity": "lung opacity"}


@dataclass
class Selection:
    """The rows to score (with their task label in ``label``) and what was left out, and why."""

    rows: pd.DataFrame
    requested: str
    split: str
    data: list[str]
    left_out: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        sources = self.rows["source"].value_counts().sort_index()
        return {"paths": self.data or ["(the run's manifest)"], "split_requested": self.requested,
                "split": self.split, "n": len(self.rows),
                "patients": int(self.rows["patient_id"].nunique()),
                "sources": {str(k): int(v) for k, v in sources.items()},
                "classes": {str(k): int(v) for k, v in self.rows["label"].value_counts().sort_index().items()},
                "left_out": self.left_out, "notes": self.notes}


def select_images(run: LoadedRun, data: Sequence[str | Path] | None = None, split: str = "auto",
                  max_images: int | None = None, skip_unknown: bool = False, seed: int = 0) -> Selection:
    """The images of ``data`` (or of the run's manifest) to evaluate ``run`` on; see the module docstring."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}.", fix=f"use one of: {', '.join(SPLITS)}.")
    if max_images is not None and int(max_images) < 1:
        raise ConfigError(f"--max-images {max_images} must be at least 1.", fix="pass a positive number.")
    data = [str(p) for p in data or []]
    manifest = _candidates(run, data)
    used, chosen = _split_rows(run, manifest, split, bool(data))
    left_out: dict[str, Any] = {}
    notes: list[str] = []
    rows = manifest.loc[chosen]
    readable = rows["status"].fillna("ok").isin(["ok", "unscanned"]) if "status" in rows else pd.Series(True, rows.index)
    if (~readable).any():
        left_out["unreadable"] = int((~readable).sum())
        notes.append(f"{int((~readable).sum())} unreadable file(s) left out (listed with their error in the manifest).")
    rows = rows.loc[readable]
    rows = _check_labels(run, rows, skip_unknown, left_out, notes)
    rows = _without_training_images(run, rows, left_out, notes)
    if max_images is not None and len(rows) > int(max_images):
        before = len(rows)
        rows = subsample_patients(rows, "label", int(max_images), seed)
        left_out["subsampled"] = before - len(rows)
        notes.append(f"patient-grouped, class-stratified subsample of {len(rows)} of {before} images (--max-images).")
    if rows.empty:
        where = ", ".join(data) or f"{run.run_dir}/manifest.csv"
        raise DataError(f"no images left to evaluate in split {used!r} of {where} "
                        f"(left out: {left_out or 'none'}).", fix="choose another --split or other --data.")
    return Selection(rows=rows.reset_index(drop=True), requested=split, split=used, data=data, left_out=left_out,
                     notes=notes)


def _candidates(run: LoadedRun, data: list[str]) -> pd.DataFrame:
    if data:
        from pneumoscope.data.manifest import build_manifest

        return build_manifest(data)
    if run.manifest is None:
        raise ConfigError("no --data given, and the run folder has no manifest.csv to take images from.",
                          path=run.run_dir, fix="pass --data PATH (a data set folder or CSV manifest).")
    return run.manifest


def _split_rows(run: LoadedRun, manifest: pd.DataFrame, split: str, own_data: bool) -> tuple[str, pd.Series]:
    """The split actually used and the mask of its rows in ``manifest``."""
    column = "official_split" if own_data else "split"
    test = manifest[column].fillna("").astype(str).eq("test")
    if split == "auto":
        split = "test" if test.any() else "all"
    if split == "all":
        return split, pd.Series(True, index=manifest.index)
    if split == "test":
        if not test.any():
            raise DataError("the data has no test split (no test/ folder or test rows).",
                            fix="use --split all to score every labelled image, or --split val for the run's "
                                "validation split.")
        return split, test
    if run.manifest is None:
        raise ConfigError("--split val needs the run's manifest.csv (it records the validation split).",
                          path=run.run_dir, fix="use --split test or all.")
    if not own_data:
        return split, manifest["split"].eq("val")
    val_hashes = set(run.rows("val")["sha256"].astype(str)) - {""}
    return split, manifest["sha256"].astype(str).isin(val_hashes)


def _check_labels(run: LoadedRun, rows: pd.DataFrame, skip: bool, left_out: dict[str, Any],
                  notes: list[str]) -> pd.DataFrame:
    """Rows whose labels the model can be scored on, with ``label`` set (ModelError naming the others)."""
    task, classes = run.task, run.classes
    labels = rows[label_column(task)].fillna("").astype(str)
    fine = rows["fine_label"].fillna("").astype(str)
    unknown = labels.eq("")
    trained = run.trained_fine_labels()
    unseen = fine.isin(NEEDS_TRAINING) & ~unknown & (~fine.isin(trained) if trained is not None else False)
    if (unknown | unseen).any() and not skip:
        raise _label_error(run, fine[unknown].value_counts(), fine[unseen].value_counts())
    if (unknown | unseen).any():
        counts = fine[unknown | unseen].value_counts()
        left_out["unknown_labels"] = {str(k): int(v) for k, v in counts.items()}
        notes.append("left out, labels this model cannot score: "
                     + ", ".join(f"{FINE_LABEL_NAMES.get(k, k)}: {v}" for k, v in counts.items()) + ".")
    rows = rows.loc[~(unknown | unseen)].copy()
    rows["label"] = labels.loc[rows.index]
    bad = sorted(set(rows["label"]) - set(classes))
    if bad:
        raise ModelError(f"labels {bad} are not classes of this model ({', '.join(classes)}).", path=run.run_dir,
                         fix="evaluate on data of the model's task.")
    return rows


def _label_error(run: LoadedRun, unknown: pd.Series, unseen: pd.Series) -> ModelError:
    fix = "evaluate on data of the model's task, or pass --skip-unknown-labels to leave those images out " \
          "(they are counted in the report)."
    if not unseen.empty and run.task == "binary":
        return ModelError(f"this binary model was not trained on COVID-19 images, but the data holds 4-class labels "
                          f"({', '.join(f'{k}: {v}' for k, v in unseen.items())} images).", path=run.run_dir,
                          fix="evaluate a 4class model on them; or " + fix)
    counts = pd.concat([unknown, unseen]).groupby(level=0).sum()
    listed = ", ".join(f"{FINE_LABEL_NAMES.get(k, k)}: {v}" for k, v in counts.items())
    return ModelError(f"the data holds labels this {run.task} model does not know ({listed} images); its classes "
                      f"are {', '.join(run.classes)}.", path=run.run_dir, fix=fix)


def _without_training_images(run: LoadedRun, rows: pd.DataFrame, left_out: dict[str, Any],
                             notes: list[str]) -> pd.DataFrame:
    if run.manifest is None:
        notes.append("the run folder has no manifest.csv: images the model trained on cannot be left out.")
        return rows
    train = run.rows("train")
    hashes = set(train["sha256"].astype(str)) - {""}
    known = train["patient_id_known"].astype(bool) if "patient_id_known" in train else pd.Series(True, train.index)
    patients = set(train.loc[known, "patient_id"].astype(str))
    row_known = rows["patient_id_known"].astype(bool) if "patient_id_known" in rows else True
    trained = rows["sha256"].astype(str).isin(hashes) | (row_known & rows["patient_id"].astype(str).isin(patients))
    if trained.any():
        left_out["trained_on"] = int(trained.sum())
        notes.append(f"{int(trained.sum())} image(s) left out: the model was trained on them (same image or same "
                     "patient as a training image).")
    return rows.loc[~trained]
