"""Per-class / per-source tables, fold summaries and the Table II comparison in CSV, Markdown and HTML."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from pneumoscope.metrics.bootstrap import headline_with_ci
from pneumoscope.metrics.classification import classification_metrics
from pneumoscope.metrics.tables import (
    comparison_table,
    fold_summary,
    per_class_table,
    per_group_table,
    pooled_confusion,
    to_csv,
    to_html,
    to_markdown,
)

CLASSES = ["normal", "bacteria", "virus"]


def fold_result(rng: np.random.Generator, n: int = 60) -> tuple[np.ndarray, np.ndarray, dict]:
    y = rng.integers(0, 3, n)
    probs = rng.dirichlet(np.ones(3), n) * 0.5 + 0.5 * np.eye(3)[np.where(rng.random(n) < 0.7, y, (y + 1) % 3)]
    return y, probs, classification_metrics(y, probs, CLASSES)


def test_per_source_table_matches_sklearn_on_each_source(rng):
    y, probs, _ = fold_result(rng, 90)
    sources = np.array(["kermany", "covid_radiography"] * 45)
    table = per_group_table(y, probs, CLASSES, sources)
    assert table["source"].tolist() == ["covid_radiography", "kermany", "all"]
    for source in ("kermany", "covid_radiography"):
        mask = sources == source
        row = table.set_index("source").loc[source]
        assert row["n"] == mask.sum()
        assert row["accuracy"] == pytest.approx(accuracy_score(y[mask], probs[mask].argmax(1)))
        assert row["virus_sensitivity"] == pytest.approx(
            recall_score(y[mask], probs[mask].argmax(1), labels=[2], average=None)[0])
    assert table.set_index("source").loc["all", "n"] == 90


def test_per_class_table_carries_the_intervals(rng):
    y, probs, metrics = fold_result(rng)
    table = per_class_table(metrics, headline_with_ci(y, probs, CLASSES, n_boot=100))
    assert table["class"].tolist() == CLASSES
    for metric in ("precision", "sensitivity", "specificity", "f1"):
        assert (table[f"{metric}_low"] <= table[metric]).all(), metric
        assert (table[metric] <= table[f"{metric}_high"]).all(), metric
        assert (table[f"{metric}_low"] < table[f"{metric}_high"]).all(), metric
    assert table["support"].sum() == len(y)


def test_per_class_table_reads_intervals_of_older_versions_without_precision(rng):
    """metrics.json written before precision / F1 had intervals: the table keeps the intervals it finds."""
    y, probs, metrics = fold_result(rng)
    headline = headline_with_ci(y, probs, CLASSES, n_boot=20)
    for intervals in headline["per_class"].values():
        del intervals["precision"], intervals["f1"]
    table = per_class_table(metrics, headline)
    assert {"sensitivity_low", "specificity_high"} <= set(table.columns)
    assert "precision_low" not in table.columns


def test_fold_summary_gives_mean_and_std_and_pooled_confusion(rng):
    folds = [fold_result(rng) for _ in range(3)]
    summary = fold_summary([m for _, _, m in folds])
    accuracies = [accuracy_score(y, p.argmax(1)) for y, p, _ in folds]
    assert summary.loc["accuracy", "mean"] == pytest.approx(np.mean(accuracies))
    assert summary.loc["accuracy", "std"] == pytest.approx(np.std(accuracies, ddof=1))
    assert summary.loc["virus_f1", "n_folds"] == 3
    pooled = np.array(pooled_confusion([m for _, _, m in folds]))
    assert pooled.sum() == 180 and pooled.trace() == sum(round(a * 60) for a in accuracies)


def test_comparison_table_rows_are_model_by_strategy_with_mean_and_std(rng):
    folds = {key: [fold_result(rng) for _ in range(2)] for key in ("a", "b")}
    results = [
        {"model": "resnet18", "strategy": "scratch", "metrics": [m for _, _, m in folds["a"]]},
        {"model": "efficientnet_lite0", "strategy": "fine-tune", "metrics": folds["b"][0][2]},
    ]
    table = comparison_table(results)
    assert table[["model", "strategy", "runs"]].values.tolist() == [["resnet18", "scratch", 2],
                                                                    ["efficientnet_lite0", "fine-tune", 1]]
    expected = [f1_score(y, p.argmax(1), labels=[1], average=None)[0] for y, p, _ in folds["a"]]
    assert table.loc[0, "bacteria_f1"] == pytest.approx(np.mean(expected))
    assert table.loc[0, "bacteria_f1_std"] == pytest.approx(np.std(expected, ddof=1))
    y, p, _ = folds["b"][0]
    assert table.loc[1, "normal_precision"] == pytest.approx(precision_score(y, p.argmax(1), labels=[0],
                                                                             average=None)[0])
    assert np.isnan(table.loc[1, "accuracy_std"])

    csv = pd.read_csv(io.StringIO(to_csv(table)))
    assert csv.loc[0, "accuracy"] == pytest.approx(table.loc[0, "accuracy"], rel=1e-5)
    markdown = to_markdown(table)
    lines = markdown.strip().splitlines()
    assert len(lines) == 4 and lines[0].startswith("| model | strategy | runs | accuracy | normal precision")
    assert f"{table.loc[0, 'accuracy']:.3f} ± {table.loc[0, 'accuracy_std']:.3f}" in lines[2]
    percent = to_markdown(table, percent=True)
    assert f"{100 * table.loc[1, 'accuracy']:.1f}" in percent.splitlines()[3]
    html = to_html(table, caption="Table II <test>")
    assert html.count("<tr>") == 3 and "&lt;test&gt;" in html and "bacteria F1" in html
