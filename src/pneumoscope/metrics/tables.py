"""Result tables (pandas): per-class and per-source breakdowns, fold summaries (mean ± std) and the comparison
table in the format of the research's Table II (rows model × strategy; accuracy and per-class precision /
sensitivity / F1), rendered as CSV, Markdown and HTML."""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pneumoscope.errors import DataError
from pneumoscope.metrics.bootstrap import PER_CLASS_CI_METRICS
from pneumoscope.metrics.classification import as_labels, as_probabilities, classification_metrics

PER_CLASS_METRICS = ("precision", "sensitivity", "specificity", "f1", "roc_auc", "pr_auc")
COMPARISON_METRICS = ("precision", "sensitivity", "f1")
HEADLINE = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "pr_auc")
STD_SUFFIX = "_std"


def _number(value: Any) -> float:
    return np.nan if value is None else float(value)


def flatten_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """One flat row from ``classification_metrics``: headline numbers, macro averages, ``{class}_{metric}``."""
    row = {
        "accuracy": _number(metrics["accuracy"]),
        "balanced_accuracy": _number(metrics["balanced_accuracy"]),
        "macro_f1": _number(metrics["macro"]["f1"]),
        "macro_precision": _number(metrics["macro"]["precision"]),
        "macro_sensitivity": _number(metrics["macro"]["recall"]),
        "weighted_f1": _number(metrics["weighted"]["f1"]),
        "roc_auc": _number(metrics["roc_auc"]),
        "pr_auc": _number(metrics["pr_auc"]),
    }
    for name, values in metrics["per_class"].items():
        for metric in PER_CLASS_METRICS:
            row[f"{name}_{metric}"] = _number(values[metric])
    return row


def per_class_table(metrics: Mapping[str, Any], headline: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """One row per class: precision, sensitivity, specificity, F1, AUCs, support, predicted count; with
    ``headline`` (from ``headline_with_ci``) the 95 % interval bounds of precision, sensitivity, specificity and F1."""
    rows = []
    for name, values in metrics["per_class"].items():
        row: dict[str, Any] = {"class": name}
        row.update({metric: _number(values[metric]) for metric in PER_CLASS_METRICS})
        row.update(support=int(values["support"]), predicted=int(values["predicted"]))
        if headline is not None:
            for metric in PER_CLASS_CI_METRICS:
                ci = headline["per_class"][name].get(metric)  # metrics.json of older versions: sens./spec. only
                if ci is not None:
                    row[f"{metric}_low"], row[f"{metric}_high"] = _number(ci["low"]), _number(ci["high"])
        rows.append(row)
    return pd.DataFrame(rows)


def per_group_table(y_true: Any, probs: Any, classes: Sequence[str], by: Sequence[Any], name: str = "source",
                    threshold: float | None = None, include_all: bool = True) -> pd.DataFrame:
    """Metrics per value of ``by`` (e.g. each image's source): n, per-class counts, accuracy, balanced accuracy,
    macro F1, ROC-AUC and the sensitivity of each class; a last row ``all`` for the pooled data."""
    classes = [str(c) for c in classes]
    y = as_labels(y_true, classes)
    p = as_probabilities(probs, y.size, len(classes))
    keys = np.asarray(by).astype(str)
    if keys.size != y.size:
        raise DataError(f"got {keys.size} {name} values for {y.size} images.", fix=f"pass one {name} per image.")
    parts = [(value, keys == value) for value in sorted(np.unique(keys))]
    if include_all and len(parts) > 1:
        parts.append(("all", np.ones(y.size, dtype=bool)))
    rows = []
    for value, mask in parts:
        m = classification_metrics(y[mask], p[mask], classes, threshold)
        row: dict[str, Any] = {name: value, "n": int(mask.sum())}
        row.update({f"n_{c}": int(m["per_class"][c]["support"]) for c in classes})
        row.update(accuracy=m["accuracy"], balanced_accuracy=_number(m["balanced_accuracy"]),
                   macro_f1=_number(m["macro"]["f1"]), roc_auc=_number(m["roc_auc"]))
        row.update({f"{c}_sensitivity": _number(m["per_class"][c]["sensitivity"]) for c in classes})
        rows.append(row)
    return pd.DataFrame(rows)


def fold_summary(fold_metrics: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Mean and sample standard deviation (ddof 1; NaN for one fold) of every flattened metric across folds.

    Rows are metrics; columns ``mean``, ``std``, ``n_folds`` (folds where the metric is defined).
    """
    if not fold_metrics:
        raise DataError("no fold results to summarise.", fix="run at least one fold.")
    frame = pd.DataFrame([flatten_metrics(m) for m in fold_metrics])
    return pd.DataFrame({"mean": frame.mean(), "std": frame.std(ddof=1), "n_folds": frame.notna().sum()})


def pooled_confusion(fold_metrics: Sequence[Mapping[str, Any]]) -> list[list[int]]:
    """Sum of the folds' confusion matrices (each out-of-fold image counted once)."""
    return np.sum([np.asarray(m["confusion_matrix"]) for m in fold_metrics], axis=0).astype(int).tolist()


def comparison_table(results: Iterable[Mapping[str, Any]], classes: Sequence[str] | None = None) -> pd.DataFrame:
    """The comparison table: one row per ``{"model", "strategy", "metrics"}`` entry.

    ``metrics`` is one ``classification_metrics`` dict or a list of them (folds or seeds): then the columns hold
    the mean, and ``{column}_std`` the standard deviation. Columns: ``model``, ``strategy``, ``runs``,
    ``accuracy``, then ``{class}_precision``, ``{class}_sensitivity``, ``{class}_f1`` for each class.
    """
    rows = []
    for entry in results:
        runs = entry["metrics"] if isinstance(entry["metrics"], (list, tuple)) else [entry["metrics"]]
        if not runs:
            raise DataError(f"no results for model {entry['model']!r}, strategy {entry['strategy']!r}.",
                            fix="finish its runs or leave it out.")
        names = list(classes) if classes is not None else list(runs[0]["per_class"])
        columns = ["accuracy"] + [f"{c}_{m}" for c in names for m in COMPARISON_METRICS]
        flat = pd.DataFrame([flatten_metrics(r) for r in runs]).reindex(columns=columns)
        row: dict[str, Any] = {"model": entry["model"], "strategy": entry["strategy"], "runs": len(runs)}
        for column in columns:
            row[column] = flat[column].mean()
            row[column + STD_SUFFIX] = flat[column].std(ddof=1) if len(runs) > 1 else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def _label(column: str) -> str:
    """Human column title: ``bacteria_f1`` → ``bacteria F1``."""
    pretty = {"f1": "F1", "roc_auc": "ROC-AUC", "pr_auc": "PR-AUC", "macro_f1": "macro F1",
              "balanced_accuracy": "balanced accuracy", "n": "n"}
    for suffix, title in sorted(pretty.items(), key=lambda item: -len(item[0])):
        if column == suffix:
            return title
        if column.endswith("_" + suffix):
            return f"{column[: -len(suffix) - 1]} {title}"
    return column.replace("_", " ")


def display_frame(frame: pd.DataFrame, digits: int = 3, percent: bool = False) -> pd.DataFrame:
    """Strings for people: numbers rounded (or × 100 with ``percent``), ``mean ± std`` where a ``{column}_std``
    column exists, ``value [low, high]`` where ``{column}_low`` / ``{column}_high`` exist, ``–`` for undefined,
    human column titles."""
    def companion(column: str, suffix: str) -> bool:
        return column.endswith(suffix) and column[: -len(suffix)] in frame.columns

    hidden = {c for c in frame.columns if any(companion(c, s) for s in (STD_SUFFIX, "_low", "_high"))}
    out = {}
    for column in frame.columns:
        if column in hidden:
            continue
        values = frame[column]
        if pd.api.types.is_float_dtype(values):
            extra = {s: frame.get(column + s) for s in (STD_SUFFIX, "_low", "_high")}
            out[_label(column)] = [
                _format(v, *(None if extra[s] is None else extra[s].iloc[i] for s in extra), digits, percent)
                for i, v in enumerate(values)]
        else:
            out[_label(column)] = values.astype(str).tolist()
    return pd.DataFrame(out)


def _format(value: float, std: float | None, low: float | None, high: float | None, digits: int,
            percent: bool) -> str:
    if value is None or not np.isfinite(value):
        return "–"
    scale = 100.0 if percent else 1.0
    decimals = max(digits - 2, 1) if percent else digits
    number = lambda x: f"{x * scale:.{decimals}f}"
    text = number(value)
    if std is not None and np.isfinite(std):
        text += f" ± {number(std)}"
    if low is not None and high is not None and np.isfinite(low) and np.isfinite(high):
        text += f" [{number(low)}, {number(high)}]"
    return text


def to_csv(frame: pd.DataFrame) -> str:
    """Numbers as they are (full precision; empty for undefined), one header row."""
    return frame.to_csv(index=False, float_format="%.6g")


def to_markdown(frame: pd.DataFrame, digits: int = 3, percent: bool = False) -> str:
    """A GitHub-flavoured Markdown table of ``display_frame``."""
    shown = display_frame(frame, digits, percent)
    escape = lambda text: str(text).replace("|", "\\|")
    lines = ["| " + " | ".join(escape(c) for c in shown.columns) + " |",
             "|" + "|".join("---" if shown[c].str.match(r"^[A-Za-z]").any() else "---:" for c in shown.columns) + "|"]
    lines += ["| " + " | ".join(escape(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def to_html(frame: pd.DataFrame, digits: int = 3, percent: bool = False, caption: str | None = None,
            css_class: str = "metrics") -> str:
    """An HTML ``<table>`` of ``display_frame`` (escaped; numeric columns right-aligned via class ``num``)."""
    shown = display_frame(frame, digits, percent)
    numeric = [not shown[c].str.match(r"^[A-Za-z]").any() for c in shown.columns]
    head = "".join(f'<th{" class=num" if num else ""}>{html.escape(c)}</th>' for c, num in zip(shown.columns, numeric))
    body = "".join(
        "<tr>" + "".join(f'<td{" class=num" if num else ""}>{html.escape(str(v))}</td>'
                         for v, num in zip(row, numeric)) + "</tr>"
        for row in shown.itertuples(index=False))
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f'<table class="{html.escape(css_class)}">{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


SPLIT_ORDER = ("train", "val", "test", "excluded")


def data_summary(manifest: pd.DataFrame, label_column: str) -> dict[str, Any]:
    """Counts for the report from a manifest: images per split × class and per source × class (with totals),
    and patients per split (ids known or not). Rows with ``status`` other than ``ok`` are counted as unreadable."""
    needed = {"split", "source", label_column}
    missing = sorted(needed - set(manifest.columns))
    if missing:
        raise DataError(f"the manifest has no column(s) {missing}.", fix="build it with pneumoscope's manifest.")
    frame = manifest.copy()
    frame[label_column] = frame[label_column].fillna("").replace("", "(not in task)")

    def counts(by: str, order: Sequence[str] | None = None) -> pd.DataFrame:
        table = pd.crosstab(frame[by], frame[label_column])
        if order is not None:
            table = table.reindex([o for o in order if o in table.index] +
                                  [i for i in table.index if i not in order])
        table["total"] = table.sum(axis=1)
        table.loc["total"] = table.sum(axis=0)
        return table.rename_axis(index=by, columns=None).reset_index()

    summary = {"by_split": counts("split", SPLIT_ORDER), "by_source": counts("source")}
    if "patient_id" in frame.columns:
        known = frame["patient_id_known"].astype(bool) if "patient_id_known" in frame.columns else True
        frame["_known"] = known
        patients = frame.groupby("split").agg(images=("patient_id", "size"), patients=("patient_id", "nunique"),
                                              images_with_patient_id=("_known", "sum"))
        order = [s for s in SPLIT_ORDER if s in patients.index] + [s for s in patients.index if s not in SPLIT_ORDER]
        summary["patients"] = patients.reindex(order).astype(int).rename_axis("split").reset_index()
    if "status" in frame.columns:
        summary["unreadable"] = int((frame["status"] != "ok").sum())
    return summary
