"""Summary tables of a manifest: what ``pneumoscope data inspect`` and ``data split`` print and save.

Every function returns a pandas DataFrame (easy to test and to save as CSV); ``render`` turns one into a rich table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pneumoscope.tasks import FINE_LABELS, label_column, task_classes

SPLIT_ORDER: tuple[str, ...] = ("train", "val", "test", "", "excluded")
_SUFFIX_FORMATS: dict[str, str] = {
    ".jpg": "jpeg", ".jpeg": "jpeg", ".jpe": "jpeg", ".png": "png", ".bmp": "bmp", ".gif": "gif", ".webp": "webp",
    ".tif": "tiff", ".tiff": "tiff", ".dcm": "dicom", ".dicom": "dicom", ".dic": "dicom", ".jp2": "jpeg2000",
    ".j2k": "jpeg2000", ".pgm": "ppm", ".ppm": "ppm",
}


# ------------------------------------------------------------------------------------------------ inspect


def count_table(manifest: pd.DataFrame, split_column: str = "official_split") -> pd.DataFrame:
    """Images per source × split × fine label (readable images only), with the binary pneumonia total, the
    unreadable files and the patients (``-`` where the source has no patient ids)."""
    ok = manifest["status"].eq("ok") if "status" in manifest else pd.Series(True, index=manifest.index)
    keys = [manifest["source"], manifest[split_column].fillna("").replace("", "-")]
    counts = pd.crosstab(keys, manifest["fine_label"].where(ok, "__unreadable__"))
    counts.index.names = ["source", "split"]
    labels = [f for f in FINE_LABELS if f in counts.columns]
    table = counts.reindex(columns=labels, fill_value=0)
    if "virus" in labels or "bacteria" in labels or "pneumonia" in labels:
        table["pneumonia_all"] = counts.reindex(columns=["bacteria", "virus", "pneumonia"], fill_value=0).sum(axis=1)
    table["total_ok"] = counts.reindex(columns=labels, fill_value=0).sum(axis=1)
    table["unreadable"] = counts.get("__unreadable__", 0)
    patients = _patients(manifest, keys, ok).reindex(table.index).astype(object)
    table["patients"] = patients.where(patients.notna(), "-")
    table = table.reset_index()
    table["split"] = pd.Categorical(table["split"], [*SPLIT_ORDER, "-"], ordered=True) if set(
        table["split"]) <= {*SPLIT_ORDER, "-"} else table["split"]
    return table.sort_values(["source", "split"]).reset_index(drop=True).astype({"split": str})


def _patients(manifest: pd.DataFrame, keys: list[pd.Series], ok: pd.Series) -> pd.Series:
    known = manifest["patient_id_known"].astype(bool) & ok if "patient_id_known" in manifest else ok
    frame = pd.DataFrame({"source": keys[0], "split": keys[1], "patient": manifest["patient_id"], "known": known})
    grouped = frame.groupby(["source", "split"])
    counts = grouped.apply(lambda g: g.loc[g["known"], "patient"].nunique() if g["known"].any() else "-",
                           include_groups=False)
    return counts.astype(object)


def patient_totals(manifest: pd.DataFrame) -> pd.DataFrame:
    """Per source: images, distinct patients (where the source has ids), images without a patient id."""
    rows = []
    for source, part in manifest.groupby("source"):
        known = part["patient_id_known"].astype(bool)
        rows.append({"source": source, "images": len(part),
                     "patients": int(part.loc[known, "patient_id"].nunique()) if known.any() else "-",
                     "images_without_patient_id": int((~known).sum())})
    return pd.DataFrame(rows)


def size_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """Per source: formats, the most common size and the range of widths and heights of the readable images."""
    ok = manifest[manifest["status"].eq("ok")]
    rows = []
    for source, part in ok.groupby("source"):
        sizes = part["width"].astype(int).astype(str) + "x" + part["height"].astype(int).astype(str)
        common = sizes.value_counts()
        rows.append({
            "source": source,
            "formats": ", ".join(f"{f} {n}" for f, n in part["format"].value_counts().items()),
            "most_common_size": f"{common.index[0]} ({common.iloc[0]})",
            "distinct_sizes": len(common),
            "width_min_median_max": _range(part["width"]),
            "height_min_median_max": _range(part["height"]),
        })
    return pd.DataFrame(rows)


def _range(values: pd.Series) -> str:
    values = values.astype(int)
    return f"{values.min()} / {int(values.median())} / {values.max()}"


def duplicate_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """Identical files (same sha256): how many sets, how many files, and how many cross a split, a source or two
    different patient ids (the split groups those patients together)."""
    hashed = manifest[manifest["sha256"].astype(str) != ""]
    groups = hashed.groupby("sha256")
    sizes = groups.size()
    repeated = sizes[sizes > 1].index
    dup = hashed[hashed["sha256"].isin(repeated)].groupby("sha256")
    split_column = "split" if "split" in manifest and manifest["split"].astype(str).ne("").any() else "official_split"
    rows = [
        ("sets of identical files", len(repeated)),
        ("files in those sets", int(sizes[sizes > 1].sum())),
        ("sets spanning two patient ids", int((dup["patient_id"].nunique() > 1).sum()) if len(repeated) else 0),
        ("sets spanning two sources", int((dup["source"].nunique() > 1).sum()) if len(repeated) else 0),
        (f"sets spanning two {split_column} values",
         int((dup[split_column].nunique() > 1).sum()) if len(repeated) else 0),
    ]
    return pd.DataFrame(rows, columns=["duplicates", "count"])


def problem_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """Unreadable files (``error``, skipped) and readable files whose extension does not match their content
    (``warning``, used)."""
    errors = manifest[manifest["status"].ne("ok")]
    rows = [{"path": p, "level": "error", "problem": e or s} for p, e, s in
            zip(errors["path"], errors["error"], errors["status"], strict=True)]
    ok = manifest[manifest["status"].eq("ok")]
    for path, fmt in zip(ok["path"], ok["format"], strict=True):
        suffix = Path(path).suffix.lower()
        expected = _SUFFIX_FORMATS.get(suffix)
        if expected != fmt and not (expected is None and suffix in ("", ".dcm")):
            rows.append({"path": path, "level": "warning",
                         "problem": f"extension {suffix or '(none)'} but the content is {fmt}; read as {fmt}."})
    return pd.DataFrame(rows, columns=["path", "level", "problem"])


def inspect_tables(manifest: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """All ``inspect`` tables by name: counts, patients, sizes, duplicates, problems."""
    return {"counts": count_table(manifest), "patients": patient_totals(manifest), "sizes": size_table(manifest),
            "duplicates": duplicate_table(manifest), "problems": problem_table(manifest)}


# ------------------------------------------------------------------------------------------------ split


def split_table(manifest: pd.DataFrame, task: str, by_source: bool = False) -> pd.DataFrame:
    """Per split (and source): images per class of ``task`` (count and share), total, distinct patients (where the
    source has patient ids) and images without a patient id."""
    classes = list(task_classes(task))
    column = label_column(task)
    known = manifest["patient_id_known"].astype(bool) if "patient_id_known" in manifest else pd.Series(
        True, index=manifest.index)
    splits = [s for s in SPLIT_ORDER if s] + sorted(set(manifest["split"]) - set(SPLIT_ORDER))
    keys = [(split, source) for split in splits for source in sorted(set(manifest["source"]))] if by_source else [
        (split, None) for split in splits]
    rows = []
    for split, source in keys:
        mask = manifest["split"] == split
        if source is not None:
            mask &= manifest["source"] == source
        part = manifest[mask]
        if part.empty:
            continue
        row: dict[str, object] = {"split": split} | ({"source": source} if by_source else {})
        labelled = part[part[column].astype(str) != ""]
        for name in classes:
            n = int((labelled[column] == name).sum())
            row[name] = f"{n} ({100 * n / max(len(labelled), 1):.1f}%)" if split != "excluded" else n
        row["total"] = len(part)
        row["patients"] = int(part.loc[known[mask], "patient_id"].nunique())
        row["no_patient_id"] = int((~known[mask]).sum())
        rows.append(row)
    table = pd.DataFrame(rows)
    if not table.empty and not (table["no_patient_id"] > 0).any():
        table = table.drop(columns="no_patient_id")
    return table


def fold_table(manifest: pd.DataFrame, task: str) -> pd.DataFrame:
    """Per fold: images, patients, class shares and the largest gap (percentage points) from the shares of all
    folds together; plus the patients shared with other folds (must be 0)."""
    classes = list(task_classes(task))
    column = label_column(task)
    in_folds = manifest[manifest["fold"].astype(int) >= 0]
    if in_folds.empty:
        return pd.DataFrame()
    whole = in_folds[column].value_counts(normalize=True).reindex(classes, fill_value=0.0)
    fold_of_patient = in_folds.groupby("patient_id")["fold"].nunique()
    shared = set(fold_of_patient[fold_of_patient > 1].index)
    rows = []
    for fold, part in in_folds.groupby("fold"):
        shares = part[column].value_counts(normalize=True).reindex(classes, fill_value=0.0)
        row: dict[str, object] = {"fold": int(fold), "images": len(part), "patients": int(part["patient_id"].nunique())}
        row.update({name: f"{100 * shares[name]:.1f}%" for name in classes})
        row["max_gap_pp"] = round(float(np.max(np.abs(shares - whole))) * 100, 2)
        row["shared_patients"] = int(part["patient_id"].isin(shared).sum())
        rows.append(row)
    overall = {"fold": "all", "images": len(in_folds), "patients": int(in_folds["patient_id"].nunique())}
    overall.update({name: f"{100 * whole[name]:.1f}%" for name in classes})
    overall.update({"max_gap_pp": 0.0, "shared_patients": len(shared)})
    return pd.DataFrame([*rows, overall])


# ------------------------------------------------------------------------------------------------ rendering


def render(frame: pd.DataFrame, title: str):
    """A rich ``Table`` of ``frame`` (numbers right-aligned)."""
    from rich.table import Table

    table = Table(title=title, title_justify="left", header_style="bold")
    for name in frame.columns:
        numeric = pd.api.types.is_numeric_dtype(frame[name])
        table.add_column(str(name).replace("_", " "), justify="right" if numeric else "left")
    for values in frame.itertuples(index=False):
        table.add_row(*("" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in values))
    return table
