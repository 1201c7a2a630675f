"""Patient-grouped, class-stratified splits and the leakage check.

Images are grouped by patient and by identical content (sha256): two patients sharing an identical image form one
group, so that no split can put the same picture on two sides. Groups are then assigned with scikit-learn's
``StratifiedGroupKFold`` (stratified by class and source):

- official ``test`` rows stay ``test`` (other rows of their groups are excluded, never trained on);
- official ``val`` rows (Kermany's 16 images) join ``val`` together with their whole groups;
- ``test_fraction`` carves a test split out of sources that have no official test;
- ``val_fraction`` carves the validation split out of the remaining rows;
- ``folds`` assigns a cross-validation fold (0..K-1) to every train/val row, -1 elsewhere.

Rows outside the task or unreadable get split ``excluded``. ``check_leakage`` raises ``LeakageError`` when a patient
or an identical image sits on two sides (or in two folds); it runs whenever splits are made or loaded.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from pneumoscope.errors import ConfigError, LeakageError
from pneumoscope.tasks import label_column

ASSIGNED_SPLITS: tuple[str, ...] = ("train", "val", "test")
EXCLUDED = "excluded"
# StratifiedGroupKFold's cost grows with the fold count (~1 s per 4 folds for 5,000 images on one core): carve-outs
# use at most 10 folds, and fewer when that costs little precision.
_MAX_CARVE_FOLDS = 10
_FOLD_PENALTY = 0.005


def assign_splits(manifest: pd.DataFrame, task: str, val_fraction: float = 0.15, seed: int = 42, *,
                  folds: int = 0, test_fraction: float = 0.0) -> pd.DataFrame:
    """A copy of ``manifest`` with ``split`` and ``fold`` set for ``task`` (deterministic for a given seed), checked
    for leakage."""
    _check_fractions(val_fraction, test_fraction, folds)
    table = manifest.copy()
    for column in ("source", "official_split"):
        if column not in table.columns:
            table[column] = ""
    table["split"] = EXCLUDED
    table["fold"] = -1
    usable = usable_rows(table, task)
    # Work in path order, so that the result does not depend on the order of the input rows.
    rows = table.index[usable][np.argsort(table.loc[usable, "path"].to_numpy(dtype=str), kind="stable")]
    if len(rows) == 0:
        return table
    part = table.loc[rows]
    groups = split_groups(part)
    labels = part[label_column(task)].astype(str).to_numpy()
    strata = (part[label_column(task)].astype(str) + "|" + part["source"].astype(str)).to_numpy()
    official = part["official_split"].fillna("").astype(str).to_numpy()
    split = _official_assignment(groups, official)
    free = split == ""
    if test_fraction > 0:
        eligible = free & _sources_without_test(part).to_numpy()
        if not eligible.any():
            raise ConfigError("--test-fraction applies only to sources without an official test split, and every "
                              "source here has one.", fix="drop --test-fraction.")
        _check_enough_patients(labels, groups, eligible, set(labels[split == "test"]), task, "test")
        carved = _carve(eligible, strata, groups, test_fraction, seed)
        split[carved] = "test"
        free &= ~carved
    if free.any():
        _check_enough_patients(labels, groups, free, set(labels[split == "val"]), task, "validation")
        remaining = val_fraction / (1.0 - test_fraction)
        carved = _carve(free, strata, groups, remaining, seed + 1)
        split[carved] = "val"
        split[free & ~carved] = "train"
    table.loc[rows, "split"] = split
    if folds:
        table.loc[rows, "fold"] = _folds(split, labels, strata, groups, folds, seed)
    check_leakage(table)
    return table


def subsample_patients(table: pd.DataFrame, label_column: str, max_images: int, seed: int,
                       pool: pd.Series | None = None, min_images: int = 1) -> pd.DataFrame:
    """About ``max_images`` of ``table``'s rows, whole patients at a time, each class of ``label_column`` keeping its
    share (``sample_patients``). Only the rows of ``pool`` (a boolean mask; default: every row) are sampled, the
    others are kept as they are; a pool no larger than ``max_images`` is kept whole."""
    pool = pd.Series(True, index=table.index) if pool is None else pool.astype(bool)
    candidates = table.loc[pool]
    if len(candidates) <= max_images:
        return table
    chosen = sample_patients(candidates["patient_id"], candidates[label_column], max_images, seed, min_images)
    return table.loc[~pool | table["patient_id"].isin(chosen)].reset_index(drop=True)


def sample_patients(patient_ids: pd.Series, labels: pd.Series, max_images: int, seed: int,
                    min_images: int = 1) -> list[str]:
    """Patients whose images make a class-stratified subsample of about ``max_images`` images.

    Whole patients are taken in a random order, always for the class furthest below its share of ``max_images``
    (at least ``min_images``). A patient's images count towards their own classes, and patients whose other images
    would overfill a class are passed over while others are left, so that patients with images of several classes
    (Kermany has children with both bacterial and viral images) do not skew the shares.
    """
    table = pd.crosstab(patient_ids.to_numpy(), labels.to_numpy())
    counts = table.to_numpy()
    shares = labels.value_counts(normalize=True).reindex(table.columns).to_numpy()
    targets = np.maximum(min_images, np.round(max_images * shares))
    main_class = counts.argmax(axis=1)
    rng = np.random.default_rng(seed)
    queues = [rng.permutation(np.flatnonzero(main_class == k)) for k in range(len(shares))]
    taken = np.zeros(len(shares))
    chosen: list[int] = []
    while True:
        open_classes = [k for k in range(len(shares)) if taken[k] < targets[k] and len(queues[k])]
        if not open_classes:
            break
        k = min(open_classes, key=lambda c: taken[c] / targets[c])
        queue = queues[k]
        others = np.arange(len(shares)) != k
        fits = ((taken + counts[queue] <= targets) | (counts[queue] == 0))[:, others].all(axis=1)
        at = int(np.argmax(fits)) if fits.any() else 0
        chosen.append(int(queue[at]))
        taken += counts[queue[at]]
        queues[k] = np.delete(queue, at)
    return table.index[chosen].tolist()


def usable_rows(manifest: pd.DataFrame, task: str) -> pd.Series:
    """Rows that belong to ``task`` and whose file was read without error."""
    in_task = manifest[label_column(task)].fillna("").astype(str).ne("")
    if "status" in manifest.columns:
        in_task &= manifest["status"].fillna("ok").astype(str).isin(["ok", "unscanned"])
    return in_task


def split_groups(manifest: pd.DataFrame) -> np.ndarray:
    """Group number of each row: rows sharing a patient id or an identical image (sha256) are one group."""
    parent = np.arange(len(manifest))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for column in ("patient_id", "sha256"):
        if column not in manifest.columns:
            continue
        first_of: dict[str, int] = {}
        for i, value in enumerate(manifest[column].fillna("").astype(str)):
            if not value:
                continue
            if value in first_of:
                parent[find(i)] = find(first_of[value])
            else:
                first_of[value] = i
    roots = np.array([find(i) for i in range(len(manifest))])
    return np.unique(roots, return_inverse=True)[1]


def check_leakage(manifest: pd.DataFrame) -> None:
    """LeakageError if a patient or an identical image (sha256) is on two sides of train/val/test or in two folds."""
    if "split" not in manifest.columns:
        return
    problems: list[str] = []
    assigned = manifest[manifest["split"].isin(ASSIGNED_SPLITS)]
    for column, what in (("patient_id", "patient"), ("sha256", "identical image")):
        problems += _shared(assigned, column, "split", what, "splits")
    if "fold" in manifest.columns:
        in_folds = manifest[pd.to_numeric(manifest["fold"], errors="coerce").fillna(-1) >= 0]
        if (in_folds["split"] == "test").any():
            problems.append(f"{int((in_folds['split'] == 'test').sum())} test row(s) carry a fold")
        for column, what in (("patient_id", "patient"), ("sha256", "identical image")):
            problems += _shared(in_folds, column, "fold", what, "folds")
    if problems:
        raise LeakageError("data leakage: " + "; ".join(problems) + ".",
                           fix="rebuild the splits with `pneumoscope data split` (it groups by patient and by "
                               "identical image), or remove the duplicated images.")


def _shared(rows: pd.DataFrame, key: str, side: str, what: str, sides: str) -> list[str]:
    if key not in rows.columns or rows.empty:
        return []
    keyed = rows[rows[key].fillna("").astype(str) != ""]
    counts = keyed.groupby(key)[side].nunique()
    leaked = counts[counts > 1]
    if leaked.empty:
        return []
    example = leaked.index[0]
    where = sorted(keyed.loc[keyed[key] == example, side].astype(str).unique())
    shown = example if what == "patient" else f"sha256 {example[:12]}…"
    return [f"{len(leaked)} {what}(s) in several {sides} (e.g. {shown} in {' and '.join(where)})"]


def _official_assignment(groups: np.ndarray, official: np.ndarray) -> np.ndarray:
    """Splits fixed by the archive: groups touching an official test row are test (their other rows excluded);
    groups touching an official val row are val. Free rows get ""."""
    test_groups = np.unique(groups[official == "test"])
    val_groups = np.setdiff1d(np.unique(groups[official == "val"]), test_groups)
    split = np.full(len(groups), "", dtype=object)
    split[np.isin(groups, val_groups)] = "val"
    in_test_group = np.isin(groups, test_groups)
    split[in_test_group] = EXCLUDED
    split[official == "test"] = "test"
    return split


def _sources_without_test(part: pd.DataFrame) -> pd.Series:
    with_test = set(part.loc[part["official_split"] == "test", "source"])
    return ~part["source"].isin(with_test)


def _check_enough_patients(labels: np.ndarray, groups: np.ndarray, mask: np.ndarray, present: set[str], task: str,
                           carved: str) -> None:
    """ConfigError unless every class among the rows in ``mask`` can give a patient to the ``carved`` split and keep
    one for training: 2 patients (1 where the carved split already has the class, e.g. from an official split)."""
    short = []
    for label in sorted(set(labels[mask])):
        of_class = mask & (labels == label)
        patients = len(np.unique(groups[of_class]))
        if patients < (1 if label in present else 2):
            short.append(f"{label}: {patients} patient{'s' if patients != 1 else ''} "
                         f"({int(of_class.sum())} image{'s' if of_class.sum() != 1 else ''})")
    if short:
        raise ConfigError(
            f"too few patients to carve a {carved} split for task {task!r}: every class needs images of at least 2 "
            f"patients (one for training, one for {carved}); found {', '.join(short)}.",
            fix="add images of more patients of those classes (a few dozen per class give meaningful figures), or "
                "set each image's split (train / val / test) in a CSV manifest's split column.")


def _carve(mask: np.ndarray, strata: np.ndarray, groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A patient-grouped, stratified subset of about ``fraction`` of the rows in ``mask``: the first folds of a
    ``StratifiedGroupKFold`` whose fold count makes ``k / folds`` closest to ``fraction`` (at most as many folds as
    the largest stratum has rows: scikit-learn refuses more)."""
    from sklearn.model_selection import StratifiedGroupKFold

    index = np.flatnonzero(mask)
    n_groups = len(np.unique(groups[index]))
    chosen = np.zeros(len(mask), dtype=bool)
    largest_stratum = int(np.unique(strata[index], return_counts=True)[1].max())
    if min(n_groups, largest_stratum) < 2:
        return chosen
    n_splits, take = _folds_for_fraction(fraction, min(n_groups, largest_stratum))
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class has fewer members than n_splits"
        for k, (_, held_out) in enumerate(splitter.split(index, strata[index], groups[index])):
            if k == take:
                break
            chosen[index[held_out]] = True
    return chosen


def _folds_for_fraction(fraction: float, n_groups: int) -> tuple[int, int]:
    """(folds, folds to take) with ``take / folds`` closest to ``fraction``, using at most ``n_groups`` folds."""
    best = (2, 1)
    best_error = float("inf")
    most = max(_MAX_CARVE_FOLDS, round(1.0 / fraction))  # small fractions need more folds
    for n in range(2, min(most, n_groups) + 1):
        take = min(n - 1, max(1, round(fraction * n)))
        error = abs(take / n - fraction) / fraction + _FOLD_PENALTY * n
        if error < best_error - 1e-9:
            best, best_error = (n, take), error
    return best


def _folds(split: np.ndarray, labels: np.ndarray, strata: np.ndarray, groups: np.ndarray, folds: int,
           seed: int) -> np.ndarray:
    from sklearn.model_selection import StratifiedGroupKFold

    fold = np.full(len(split), -1, dtype=int)
    in_folds = np.isin(split, ["train", "val"])
    index = np.flatnonzero(in_folds)
    n_groups = len(np.unique(groups[index]))
    if n_groups < folds:
        raise ConfigError(f"{folds} folds need at least {folds} patients outside the test split, found {n_groups}.",
                          fix="use fewer --folds or more data.")
    per_class = {label: len(np.unique(groups[in_folds & (labels == label)])) for label in sorted(set(labels[index]))}
    short = {label: n for label, n in per_class.items() if n < folds}
    if short:
        found = ", ".join(f"{label}: {n}" for label, n in short.items())
        raise ConfigError(f"{folds} folds need at least {folds} patients of every class outside the test split (one "
                          f"per fold); found {found}.", fix="use fewer --folds or add patients of those classes.")
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for k, (_, held_out) in enumerate(splitter.split(index, strata[index], groups[index])):
            fold[index[held_out]] = k
    return fold


def _check_fractions(val_fraction: float, test_fraction: float, folds: int) -> None:
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be between 0 and 1, got {val_fraction}.", fix="use e.g. 0.15.")
    if not 0.0 <= test_fraction < 1.0 or val_fraction + test_fraction >= 1.0:
        raise ConfigError(f"test_fraction must be in [0, 1) with val + test < 1, got {test_fraction}.",
                          fix="use e.g. --test-fraction 0.15.")
    if folds == 1 or folds < 0:
        raise ConfigError(f"folds must be 0 (none) or at least 2, got {folds}.", fix="use e.g. --folds 5.")
