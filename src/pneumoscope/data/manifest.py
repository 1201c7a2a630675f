"""The manifest: one table of every image with its labels, patient, source, split, size, hash and status.

``build_manifest`` reads the sources and scans every file (read, hash, full decode) in parallel; unreadable files
stay in the table with ``status == "error"`` and the reason, so that they are counted and listed, never dropped.
See docs/ARCHITECTURE.md for the columns.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from pneumoscope.data.imaging import scan_image_file
from pneumoscope.data.parallel import parallel_map
from pneumoscope.data.sources import SourceSpec, read_sources
from pneumoscope.errors import DataError
from pneumoscope.tasks import TASKS, label_column, task_label

MANIFEST_COLUMNS: tuple[str, ...] = (
    "path", "source", "fine_label", "label_binary", "label_3class", "label_4class", "patient_id",
    "patient_id_known", "official_split", "split", "fold", "width", "height", "format", "sha256", "status", "error",
)
SCAN_COLUMNS: tuple[str, ...] = ("width", "height", "format", "sha256", "status", "error")
REQUIRED_COLUMNS: tuple[str, ...] = ("path", "fine_label", "patient_id")
_TEXT_COLUMNS = ("path", "source", "fine_label", "label_binary", "label_3class", "label_4class", "patient_id",
                 "official_split", "split", "format", "sha256", "status", "error")


def build_manifest(sources: Iterable[str | Path | SourceSpec], *, scan: bool = True, workers: int | None = None,
                   progress: bool | None = None) -> pd.DataFrame:
    """Read ``sources`` (folders, CSV files, ``NAME=PATH``) into one manifest; ``scan`` reads, hashes and decodes
    every file (in ``workers`` processes, with a progress bar if ``progress``; None: when stderr is a terminal)."""
    if isinstance(sources, str | Path | SourceSpec):
        sources = [sources]
    table = read_sources(sources)
    table = add_task_labels(table)
    table["split"] = ""
    table["fold"] = -1
    if scan:
        table = scan_manifest(table, workers=workers, progress=progress)
    else:
        for column in SCAN_COLUMNS:
            table[column] = None if column in ("width", "height") else ""
        table["status"] = "unscanned"
    return normalise_manifest(table)


def add_task_labels(table: pd.DataFrame) -> pd.DataFrame:
    """Add ``label_<task>`` for every task from ``fine_label`` (empty where the image is not part of the task)."""
    table = table.copy()
    for task in TASKS:
        table[label_column(task)] = [task_label(task, fine) or "" for fine in table["fine_label"]]
    return table


def scan_manifest(table: pd.DataFrame, *, workers: int | None = None, progress: bool | None = None) -> pd.DataFrame:
    """Fill width, height, format, sha256, status and error of every row by reading and decoding its file."""
    paths = table["path"].astype(str).tolist()
    results = list(parallel_map(scan_image_file, paths, workers=workers, chunksize=64,
                                description="scanning images", progress=progress))
    scanned = pd.DataFrame(results, columns=list(SCAN_COLUMNS), index=table.index)
    table = table.drop(columns=[c for c in SCAN_COLUMNS if c in table.columns])
    return pd.concat([table, scanned], axis=1)


def normalise_manifest(table: pd.DataFrame) -> pd.DataFrame:
    """Columns in the documented order (extra columns kept at the end) with consistent types and no NaN text."""
    table = table.copy()
    for column in _TEXT_COLUMNS:
        if column not in table.columns:
            table[column] = ""
        table[column] = table[column].fillna("").astype(str)
    if "patient_id_known" not in table.columns:
        table["patient_id_known"] = True
    table["patient_id_known"] = table["patient_id_known"].map(_as_bool).astype(bool)
    for column in ("fold", "width", "height"):
        if column not in table.columns:
            table[column] = -1 if column == "fold" else None
    table["fold"] = pd.to_numeric(table["fold"], errors="coerce").fillna(-1).astype(int)
    for column in ("width", "height"):
        table[column] = pd.to_numeric(table[column], errors="coerce").astype("Int64")
    extra = [c for c in table.columns if c not in MANIFEST_COLUMNS]
    return table[list(MANIFEST_COLUMNS) + extra]


def write_manifest(table: pd.DataFrame, path: str | Path) -> Path:
    """Write the manifest to ``path`` atomically: Parquet for ``.parquet``, else CSV."""
    from pneumoscope.files import atomic_write

    if Path(path).suffix.lower() == ".parquet":
        return atomic_write(path, lambda handle: table.to_parquet(handle, index=False))
    return atomic_write(path, lambda handle: table.to_csv(handle, index=False))


def save_manifest(table: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Write ``OUT_DIR/manifest.csv`` and ``OUT_DIR/manifest.parquet``; returns both paths."""
    out_dir = Path(out_dir)
    return [write_manifest(table, out_dir / "manifest.csv"), write_manifest(table, out_dir / "manifest.parquet")]


def read_manifest(path: str | Path, check: bool = True) -> pd.DataFrame:
    """Read a manifest written by ``write_manifest``; with ``check``, the leakage check runs on its splits."""
    path = Path(path)
    if not path.is_file():
        raise DataError("manifest not found.", path=path, fix="build one with `pneumoscope data split`.")
    try:
        if path.suffix.lower() == ".parquet":
            table = pd.read_parquet(path)
        else:
            table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as error:  # noqa: BLE001 - pandas/pyarrow raise many types for unreadable files
        raise DataError(f"cannot read the manifest ({' '.join(str(error).split())}).", path=path,
                        fix="rebuild it with `pneumoscope data split`.") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"not a Pneumoscope manifest: column(s) {', '.join(missing)} missing.", path=path,
                        fix="rebuild it with `pneumoscope data split`.")
    if not all(label_column(t) in table.columns for t in TASKS):
        table = add_task_labels(table)
    table = normalise_manifest(table)
    if check:
        from pneumoscope.data.splits import check_leakage

        check_leakage(table)
    return table


def _as_bool(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value) if value is not None and not pd.isna(value) else False
