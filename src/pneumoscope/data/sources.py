"""Source readers: turn a data set folder (or a CSV listing) into rows of the manifest.

Each reader returns a DataFrame with ``SOURCE_COLUMNS``: the image path, the source name, the fine label (see
``pneumoscope.tasks.FINE_LABELS``), the patient id, whether that id is a real patient, and the archive's split.
Supported layouts:

- ``kermany``: ``chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/`` (Kermany et al. 2018); cause and patient come from
  the file names (``person1000_bacteria_2931.jpeg`` → bacteria, patient ``person1000``; ``IM-0115-0001.jpeg`` →
  normal, patient ``IM-0115``).
- ``covid_radiography``: the COVID-19 Radiography Database (``COVID/``, ``Normal/``, ``Viral Pneumonia/``,
  ``Lung_Opacity/``, each with or without an ``images/`` subfolder); no patient ids.
- ``folders``: any class-per-folder tree (``ROOT/CLASS/...`` or ``ROOT/SPLIT/CLASS/...``); no patient ids.
- ``csv``: a CSV file with columns ``path,label`` and optionally ``patient_id``, ``split``, ``source``.

Every file inside a class folder becomes a row (non-images too, so that the scan lists them as problems), except
operating-system clutter (hidden files, ``Thumbs.db``, ``desktop.ini``, ``__MACOSX``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pneumoscope.errors import DataError
from pneumoscope.tasks import FINE_LABELS

KERMANY = "kermany"
COVID_RADIOGRAPHY = "covid_radiography"
FOLDERS = "folders"
CSV = "csv"
LAYOUTS: tuple[str, ...] = (KERMANY, COVID_RADIOGRAPHY, FOLDERS, CSV)

SOURCE_COLUMNS: tuple[str, ...] = ("path", "source", "fine_label", "patient_id", "patient_id_known", "official_split")

SPLIT_NAMES: dict[str, str] = {"train": "train", "training": "train", "val": "val", "valid": "val",
                               "validation": "val", "test": "test", "testing": "test"}

# Class folder / CSV label names (lower case, "-" and " " read as "_") → fine label.
LABEL_SYNONYMS: dict[str, str] = {
    "normal": "normal", "healthy": "normal", "no_finding": "normal", "negative": "normal",
    "bacteria": "bacteria", "bacterial": "bacteria", "bacterial_pneumonia": "bacteria",
    "virus": "virus", "viral": "virus", "viral_pneumonia": "virus",
    "covid": "covid", "covid19": "covid", "covid_19": "covid", "covid_pneumonia": "covid",
    "pneumonia": "pneumonia", "positive": "pneumonia",
    "lung_opacity": "lung_opacity", "opacity": "lung_opacity",
}

COVID_DB_FOLDERS: dict[str, str] = {"covid": "covid", "normal": "normal", "viral_pneumonia": "virus",
                                    "lung_opacity": "lung_opacity"}

_CLUTTER_FILES = frozenset({"thumbs.db", "desktop.ini"})
_CLUTTER_DIRS = frozenset({"__macosx"})
_KERMANY_PNEUMONIA = re.compile(r"^(?P<patient>person\d+)_(?P<cause>bacteria|virus)(?:_\d+)+$", re.IGNORECASE)
# IM-0115-0001, NORMAL2-IM-0666-0001 and the multi-image IM-0656-0001-0002: the patient is the "IM-NNNN" part.
_KERMANY_NORMAL = re.compile(r"^(?P<patient>(?:NORMAL\d*-)?IM-\d+)(?:-\d+)+$", re.IGNORECASE)
_LAYOUT_HELP = ("chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/ (Kermany), COVID/ Normal/ 'Viral Pneumonia'/ "
                "Lung_Opacity/ (COVID-19 Radiography DB), one folder per class (optionally inside train/val/test), "
                "or a CSV file with columns path,label")


@dataclass(frozen=True)
class SourceSpec:
    """One data source: its path, its layout (None: detect it) and the name written to the ``source`` column."""

    path: Path
    layout: str | None = None
    name: str | None = None


def parse_source(value: str | Path | SourceSpec) -> SourceSpec:
    """A ``SourceSpec`` from a path, or from ``NAME=PATH`` (the name then goes to the ``source`` column)."""
    if isinstance(value, SourceSpec):
        return value
    text = str(value)
    name, sep, rest = text.partition("=")
    if sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]*", name) and not Path(text).exists():
        return SourceSpec(Path(rest).expanduser(), name=name)
    return SourceSpec(Path(text).expanduser())


def read_sources(sources: Iterable[str | Path | SourceSpec]) -> pd.DataFrame:
    """Read and combine several sources into one table of ``SOURCE_COLUMNS`` (sorted by source, then path)."""
    specs = [parse_source(s) for s in sources]
    if not specs:
        raise DataError("no data set given.", fix="pass at least one data set folder or CSV file.")
    frames = [read_source(spec) for spec in specs]
    table = pd.concat(frames, ignore_index=True)
    _refuse_repeated_files(table)
    return table.sort_values(["source", "path"], kind="stable").reset_index(drop=True)


def read_source(spec: str | Path | SourceSpec) -> pd.DataFrame:
    """Read one source (its layout detected unless given) into a table of ``SOURCE_COLUMNS``."""
    spec = parse_source(spec)
    path = _absolute(spec.path)
    if spec.layout is not None and spec.layout not in LAYOUTS:
        raise DataError(f"unknown layout {spec.layout!r}.", path=path, fix=f"use one of: {', '.join(LAYOUTS)}.")
    layout, root = (spec.layout, path) if spec.layout else detect_layout(path)
    readers = {KERMANY: read_kermany, COVID_RADIOGRAPHY: read_covid_radiography, FOLDERS: read_class_folders,
               CSV: read_csv_manifest}
    return readers[layout](root, name=spec.name or layout)


# ------------------------------------------------------------------------------------------------ detection


def detect_layout(path: str | Path) -> tuple[str, Path]:
    """The layout of ``path`` and the folder (or file) to read; DataError naming the path if none fits."""
    path = _absolute(Path(path))
    if not path.exists():
        raise DataError("data set not found.", path=path, fix="check the path (a data set folder or a CSV file).")
    if path.is_file():
        if path.suffix.lower() in (".csv", ".parquet"):
            return CSV, path
        raise DataError("not a data set: a single file that is not a CSV manifest.", path=path,
                        fix=f"pass a data set folder ({_LAYOUT_HELP}).")
    for _ in range(3):  # descend through wrapper folders such as chest_xray/chest_xray
        layout = _layout_of_folder(path)
        if layout is not None:
            return layout, path
        inner = _wrapped_folder(path)
        if inner is None:
            break
        path = inner
    raise _unknown_layout(path)


def _layout_of_folder(folder: Path) -> str | None:
    children = {_key(d.name): d for d in _subfolders(folder)}
    split_folders = [d for k, d in children.items() if k in SPLIT_NAMES]
    if split_folders:
        classes = {_key(c.name) for d in split_folders for c in _subfolders(d)}
        return KERMANY if classes and classes <= {"normal", "pneumonia"} else FOLDERS
    keys = set(children)
    if keys & {"covid", "viral_pneumonia", "lung_opacity"} and keys <= set(COVID_DB_FOLDERS):
        return COVID_RADIOGRAPHY
    if keys and keys <= set(LABEL_SYNONYMS):
        return FOLDERS
    return None


def _wrapped_folder(folder: Path) -> Path | None:
    """The one folder to look into when ``folder`` only wraps a data set (e.g. ``download/chest_xray``); None when
    there is no such folder or when there are several data sets side by side."""
    children = _subfolders(folder)
    if len(children) == 1 and not _files(folder):
        return children[0]
    datasets = [d for d in children if _layout_of_folder(d) or _key(d.name) == "chest_xray"]
    return datasets[0] if len(datasets) == 1 and _key(datasets[0].name) == "chest_xray" else None


def _unknown_layout(path: Path) -> DataError:
    children = _subfolders(path)
    datasets = [d.name for d in children if _layout_of_folder(d) or _wrapped_folder(d)]
    if len(datasets) > 1:
        return DataError(f"holds several data sets ({', '.join(sorted(datasets))}).", path=path,
                         fix="pass the ones you want, each as its own PATH (they are combined with a source "
                             "column).")
    found = ", ".join(sorted(d.name for d in children)[:8]) or "no subfolders"
    return DataError(f"unknown data set layout (found: {found}).", path=path, fix=f"use {_LAYOUT_HELP}.")


# ------------------------------------------------------------------------------------------------ readers


def read_kermany(root: str | Path, name: str = KERMANY) -> pd.DataFrame:
    """Kermany layout ``ROOT/{train,val,test}/{NORMAL,PNEUMONIA}/``: labels and patients from the file names."""
    root = _absolute(Path(root))
    rows: list[dict[str, object]] = []
    for split_dir in _split_folders(root):
        split = SPLIT_NAMES[_key(split_dir.name)]
        class_dirs = _class_folders(split_dir)
        for class_dir in class_dirs:
            folder_class = _key(class_dir.name)
            if folder_class not in ("normal", "pneumonia"):
                raise DataError(f"unexpected folder {class_dir.name!r} in a Kermany split folder.", path=class_dir,
                                fix="a Kermany split folder holds only NORMAL and PNEUMONIA.")
            for file in _image_files(class_dir):
                fine_label, patient = kermany_label_and_patient(folder_class, file.stem)
                rows.append(_row(file, name, fine_label, patient or file.stem, patient is not None, split))
    return _frame(rows, root)


def kermany_label_and_patient(folder_class: str, stem: str) -> tuple[str, str | None]:
    """Fine label and patient id (None if the name does not carry one) of a Kermany file in ``folder_class``."""
    if folder_class == "normal":
        match = _KERMANY_NORMAL.match(stem)
        return "normal", match["patient"] if match else None
    match = _KERMANY_PNEUMONIA.match(stem)
    if match is None:
        return "pneumonia", None  # a PNEUMONIA image whose name does not say bacteria or virus
    return match["cause"].lower(), match["patient"]


def read_covid_radiography(root: str | Path, name: str = COVID_RADIOGRAPHY) -> pd.DataFrame:
    """COVID-19 Radiography Database: ``ROOT/<class>/[images/]*.png``; images have no patient ids."""
    root = _absolute(Path(root))
    rows: list[dict[str, object]] = []
    for class_dir in _class_folders(root):
        fine_label = COVID_DB_FOLDERS.get(_key(class_dir.name))
        if fine_label is None:
            raise DataError(f"unexpected class folder {class_dir.name!r} in the COVID-19 Radiography Database.",
                            path=class_dir, fix="keep only COVID, Normal, Viral Pneumonia and Lung_Opacity.")
        images_dir = next((d for d in _subfolders(class_dir) if _key(d.name) == "images"), None)
        image_root = images_dir or class_dir
        for file in _image_files(image_root, skip_masks=images_dir is None):
            rows.append(_row(file, name, fine_label, file.stem, False, ""))
    return _frame(rows, root)


def read_class_folders(root: str | Path, name: str = FOLDERS) -> pd.DataFrame:
    """Any class-per-folder tree, ``ROOT/CLASS/...`` or ``ROOT/SPLIT/CLASS/...``; each image is its own patient."""
    root = _absolute(Path(root))
    split_dirs = [d for d in _subfolders(root) if _key(d.name) in SPLIT_NAMES]
    parents = [(d, SPLIT_NAMES[_key(d.name)]) for d in split_dirs] if split_dirs else [(root, "")]
    rows: list[dict[str, object]] = []
    for parent, split in parents:
        for class_dir in _class_folders(parent):
            fine_label = fine_label_of(class_dir.name)
            if fine_label is None:
                raise DataError(f"unknown class folder {class_dir.name!r}.", path=class_dir,
                                fix=f"name class folders after one of: {', '.join(FINE_LABELS)} "
                                    "(or use a CSV manifest).")
            for file in _image_files(class_dir):
                patient = file.relative_to(root).with_suffix("").as_posix()
                rows.append(_row(file, name, fine_label, patient, False, split))
    return _frame(rows, root)


def read_csv_manifest(csv_path: str | Path, name: str = CSV) -> pd.DataFrame:
    """A CSV (or Parquet) listing: ``path,label`` plus optional ``patient_id``, ``split``, ``source``; relative paths
    are read from the file's folder. A manifest written by Pneumoscope reads back with its sources and patients (its
    ``official_split`` is used, not the assigned ``split``)."""
    csv_path = _absolute(Path(csv_path))
    table = _read_table(csv_path)
    table.columns = [str(c).strip().lower() for c in table.columns]
    table = _pick_columns(table)
    missing = [c for c in ("path", "label") if c not in table.columns]
    if missing:
        raise DataError(f"CSV manifest lacks column(s) {', '.join(missing)} (found: "
                        f"{', '.join(table.columns) or 'none'}).", path=csv_path,
                        fix="give it a header line with at least path,label (optional: patient_id, split, source).")
    if table.empty:
        raise DataError("CSV manifest has no rows.", path=csv_path, fix="list one image per line.")
    table = table.fillna("").astype(str).apply(lambda column: column.str.strip())
    _refuse_blank(table, "path", csv_path)
    labels = _csv_labels(table["label"], csv_path)
    splits = _csv_splits(table["split"] if "split" in table else pd.Series("", index=table.index), csv_path)
    sources = table["source"].where(table["source"] != "", name) if "source" in table else pd.Series(name,
                                                                                                    table.index)
    patients = table["patient_id"] if "patient_id" in table else pd.Series("", index=table.index)
    known = patients.ne("")
    if "patient_id_known" in table:  # a manifest written by Pneumoscope
        known &= table["patient_id_known"].str.lower().isin(["true", "1", "yes"])
    rows = []
    for i in range(len(table)):
        file = Path(table["path"].iat[i]).expanduser()
        file = _absolute(file if file.is_absolute() else csv_path.parent / file)
        source, patient = sources.iat[i], patients.iat[i]
        patient = patient.removeprefix(f"{source}:") if patient else file.stem  # a manifest's ids carry the source
        rows.append(_row(file, source, labels[i], patient, bool(known.iat[i]), splits[i]))
    return _frame(rows, csv_path)


def _pick_columns(table: pd.DataFrame) -> pd.DataFrame:
    """Map accepted column names onto path / label / patient_id / split (a manifest's ``official_split`` wins over
    its assigned ``split``)."""
    renames = {}
    if "label" not in table.columns and "fine_label" in table.columns:
        renames["fine_label"] = "label"
    if "patient_id" not in table.columns and "patient" in table.columns:
        renames["patient"] = "patient_id"
    if "official_split" in table.columns:
        table = table.drop(columns=[c for c in ("split",) if c in table.columns])
        renames["official_split"] = "split"
    return table.rename(columns=renames)


def fine_label_of(name: str) -> str | None:
    """Fine label named by a class folder or CSV label (``NORMAL``, ``Viral Pneumonia``, ``COVID-19``...)."""
    return LABEL_SYNONYMS.get(_key(name))


# ------------------------------------------------------------------------------------------------ helpers


def _row(file: Path, source: str, fine_label: str, patient: str, known: bool, split: str) -> dict[str, object]:
    return {"path": str(file), "source": source, "fine_label": fine_label, "patient_id": f"{source}:{patient}",
            "patient_id_known": known, "official_split": split}


def _frame(rows: list[dict[str, object]], root: Path) -> pd.DataFrame:
    if not rows:
        raise DataError("no image files found.", path=root, fix=f"check the folder; accepted layouts: {_LAYOUT_HELP}.")
    return pd.DataFrame(rows, columns=list(SOURCE_COLUMNS))


def _split_folders(root: Path) -> list[Path]:
    folders = [d for d in _subfolders(root) if _key(d.name) in SPLIT_NAMES]
    if not folders:
        raise DataError("no train/val/test folders.", path=root, fix=f"use {_LAYOUT_HELP}.")
    return folders


def _class_folders(parent: Path) -> list[Path]:
    folders = _subfolders(parent)
    if not folders:
        raise DataError("folder holds no class folders.", path=parent,
                        fix="add one folder per class (e.g. NORMAL, PNEUMONIA), or remove this folder.")
    return folders


def _image_files(folder: Path, skip_masks: bool = False) -> list[Path]:
    """Every file under ``folder`` (recursively), minus OS clutter; DataError if there is none."""
    files: list[Path] = []
    for directory, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not _is_clutter(d)
                             and not (skip_masks and d.lower() == "masks"))
        files.extend(Path(directory) / f for f in sorted(filenames) if not _is_clutter(f))
    if not files:
        raise DataError("class folder is empty (no image files).", path=folder,
                        fix="put its images back (an interrupted download or unzip?) or remove the folder.")
    return files


def _subfolders(folder: Path) -> list[Path]:
    try:
        entries = sorted(folder.iterdir())
    except NotADirectoryError:
        return []
    except OSError as error:
        raise DataError(f"cannot list the folder ({error.strerror or error}).", path=folder,
                        fix="check its permissions.") from None
    return [e for e in entries if e.is_dir() and not _is_clutter(e.name)]


def _files(folder: Path) -> list[Path]:
    return [e for e in folder.iterdir() if e.is_file() and not _is_clutter(e.name)]


def _is_clutter(name: str) -> bool:
    return name.startswith(".") or name.lower() in _CLUTTER_FILES or name.lower() in _CLUTTER_DIRS


def _key(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def _absolute(path: Path) -> Path:
    return Path(os.path.abspath(path.expanduser()))


def _read_table(csv_path: Path) -> pd.DataFrame:
    if not csv_path.is_file():
        raise DataError("CSV manifest not found.", path=csv_path, fix="check the path.")
    try:
        if csv_path.suffix.lower() == ".parquet":
            return pd.read_parquet(csv_path).astype(str)
        return pd.read_csv(csv_path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DataError("CSV manifest is empty.", path=csv_path,
                        fix="give it a header line path,label and one image per line.") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as error:
        raise DataError(f"not a readable table file ({' '.join(str(error).split())}).", path=csv_path,
                        fix="save it as UTF-8 CSV with a header line path,label.") from None


def _refuse_blank(table: pd.DataFrame, column: str, csv_path: Path) -> None:
    blank = table.index[table[column] == ""]
    if len(blank):
        raise DataError(f"empty {column} in {len(blank)} row(s) (first: line {blank[0] + 2}).", path=csv_path,
                        fix=f"fill in the {column} of every row or delete those rows.")


def _csv_labels(labels: pd.Series, csv_path: Path) -> list[str]:
    fine = [fine_label_of(v) for v in labels]
    bad = [i for i, f in enumerate(fine) if f is None]
    if bad:
        examples = ", ".join(sorted({repr(labels.iat[i]) for i in bad})[:5])
        raise DataError(f"unknown label(s) {examples} in {len(bad)} row(s) (first: line {bad[0] + 2}).",
                        path=csv_path, fix=f"use one of: {', '.join(FINE_LABELS)}.")
    return [f for f in fine if f is not None]


def _csv_splits(splits: pd.Series, csv_path: Path) -> list[str]:
    out = [SPLIT_NAMES.get(_key(v), None) if v else "" for v in splits]
    bad = [i for i, s in enumerate(out) if s is None]
    if bad:
        raise DataError(f"unknown split {splits.iat[bad[0]]!r} in {len(bad)} row(s) (first: line {bad[0] + 2}).",
                        path=csv_path, fix="use train, val or test (or leave it empty).")
    return [s or "" for s in out]


def _refuse_repeated_files(table: pd.DataFrame) -> None:
    repeated = table["path"][table["path"].duplicated()]
    if len(repeated):
        raise DataError(f"{repeated.nunique()} file(s) are listed twice (e.g. {repeated.iat[0]}).",
                        fix="pass each data set once (a CSV must not list files of a folder also given).")

