"""Choosing a recipe on validation and generalisation proxies, never on one figure (docs/GENERALISATION.md,
"Selection rule"):

    gate on validation -> rank on five proxies (rounded to their noise step) -> mean rank -> lowest wins

``score_runs(figures, task)`` takes one row per run (the columns of ``PROXIES`` plus ``val_acc`` and ``val_auc``) and
returns the same rows with ``eligible``, one ``rank_<proxy>`` column per proxy, ``score`` and ``place``;
``seed_means`` turns runs into one row per recipe (the rule's third step), ``decide_between_finalists`` applies it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# proxy column -> (rounding step, higher is better)
PROXIES: dict[str, tuple[float, bool]] = {
    "unseen_spec": (0.02, True),
    "res_mean_abs_dp": (0.005, False),
    "stress_photometric_bal": (0.02, True),
    "stress_framing_bal": (0.02, True),
    "stress_sharpness_bal": (0.02, True),
}
# task -> (validation accuracy window, validation AUC window) below the best run of the task
GATES: dict[str, tuple[float, float]] = {"binary": (0.010, 0.005), "3class": (0.020, 0.020)}


def rounded(values: pd.Series, step: float) -> pd.Series:
    """``values`` rounded to the nearest multiple of ``step`` (differences below the step count as ties)."""
    return (values / step).round() * step


def eligible(figures: pd.DataFrame, task: str) -> pd.Series:
    """Step 1: validation accuracy and AUC within the task's window of the best run."""
    accuracy_window, auc_window = GATES.get(task, GATES["3class"])
    return (figures["val_acc"] >= figures["val_acc"].max() - accuracy_window - 1e-9) & (
        figures["val_auc"] >= figures["val_auc"].max() - auc_window - 1e-9)


def score_runs(figures: pd.DataFrame, task: str) -> pd.DataFrame:
    """Steps 1-2 of the rule: eligibility, rank per proxy among the eligible runs, mean rank, place."""
    missing = [c for c in ("val_acc", "val_auc", *PROXIES) if c not in figures]
    if missing:
        raise ValueError(f"figures lack the columns {missing}")
    out = figures.copy()
    out["eligible"] = eligible(figures, task)
    pool = out.loc[out["eligible"]]
    for column, (step, higher_is_better) in PROXIES.items():
        values = rounded(pool[column].astype(float), step)
        out[f"rank_{column}"] = values.rank(ascending=not higher_is_better, method="average")
    rank_columns = [f"rank_{c}" for c in PROXIES]
    out["score"] = out[rank_columns].mean(axis=1)
    order = out.loc[out["eligible"]].sort_values(["score", "val_acc"], ascending=[True, False]).index
    out["place"] = np.nan
    out.loc[order, "place"] = np.arange(1, len(order) + 1)
    return out


def seed_means(figures: pd.DataFrame, by: str = "recipe") -> pd.DataFrame:
    """One row per task and ``by`` value (a recipe over its seeds): the mean of the rule's figures, ``seeds`` (how
    many runs) and ``runs`` (their index labels, comma-separated); indexed by the ``by`` value."""
    columns = ["val_acc", "val_auc", *PROXIES]
    missing = [c for c in ("task", by, *columns) if c not in figures]
    if missing:
        raise ValueError(f"figures lack the columns {missing}")
    keys = [figures["task"], figures[by]]
    grouped = figures[columns].astype(float).groupby(keys, sort=False)
    means = grouped.mean()
    means["seeds"] = grouped.size()
    means["runs"] = figures.index.to_series().groupby(keys, sort=False).agg(", ".join)
    return means.reset_index(level="task").rename_axis(by)


def decide_between_finalists(means: pd.DataFrame, task: str) -> str:
    """Step 3 on the finalists' seed means: the rule again; within 0.5 of score, the better unseen-site specificity."""
    scored = score_runs(means, task).loc[lambda t: t["eligible"]].sort_values("place")
    if len(scored) == 1:
        return str(scored.index[0])
    first, second = scored.iloc[0], scored.iloc[1]
    if abs(first["score"] - second["score"]) <= 0.5 and second["unseen_spec"] > first["unseen_spec"]:
        return str(scored.index[1])
    return str(scored.index[0])
