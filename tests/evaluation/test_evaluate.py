"""``evaluation.evaluate`` on the tiny synthetic Kermany tree: files, metrics against scikit-learn, which images are
scored (test / val / all), the training images left out, and the split-use statement."""

from __future__ import annotations

import json
import os
import shutil
import stat

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, recall_score, roc_auc_score

from pneumoscope.evaluation.evaluate import evaluate
from pneumoscope.results import read_metrics


@pytest.fixture(scope="module")
def test_eval(tiny_run, tmp_path_factory):
    """The tiny run scored on the tree's official test split, with the stress test on 6 validation images and
    the proxies pointed at a folder without their data (so they are skipped, with the reason)."""
    return evaluate(tiny_run, None, "test", tmp_path_factory.mktemp("eval") / "eval-test", n_boot=200, stress_images=6, severities=(3,),
                    data_root=tmp_path_factory.mktemp("no_proxy_data"), progress=False, report=False)


def test_evaluate_writes_metrics_predictions_and_robustness(test_eval, tiny_run):
    metrics = read_metrics(test_eval)
    predictions = pd.read_csv(test_eval / "predictions.csv")
    manifest = pd.read_csv(tiny_run / "manifest.csv", keep_default_na=False)
    test_rows = manifest[manifest["split"] == "test"]
    assert len(predictions) == len(test_rows) == metrics["data"]["n"] == 12
    assert set(predictions["path"]) == set(test_rows["path"])
    assert list(predictions.columns[:6]) == ["path", "source", "patient_id", "patient_id_known", "label", "predicted"]
    assert np.allclose(predictions[["p_normal", "p_pneumonia"]].sum(axis=1), 1.0)
    assert metrics["model"]["threshold"] == json.loads((tiny_run / "model.json").read_text())["threshold"]
    stress = pd.read_csv(test_eval / "robustness.csv")
    assert stress["perturbation"].iloc[0] == "none" and (stress["severity"].iloc[1:].isin([1, 3])).all()
    robustness = metrics["robustness"]
    assert robustness["stress_test"]["n_images"] >= 4
    assert "folder not found" in robustness["unseen_site_normals"]["skipped"]


def test_accuracy_in_and_out_of_scope_is_reported_apart(test_eval):
    metrics = read_metrics(test_eval)
    predictions = pd.read_csv(test_eval / "predictions.csv")
    scope = metrics["scope"]
    inside = predictions["in_scope"].astype(bool)
    assert scope["in_scope"]["n"] == inside.sum() and scope["out_of_scope"]["n"] == (~inside).sum()
    if inside.any():
        assert scope["in_scope"]["accuracy"] == pytest.approx(predictions.loc[inside, "correct"].mean())
    assert scope["population"]["name"] == "pediatric" and scope["population_check"] is True
    assert sum(scope["reasons"].values()) >= (~inside).sum()


def test_metrics_match_scikit_learn_at_the_stored_threshold_and_at_one_half(test_eval):
    metrics = read_metrics(test_eval)
    predictions = pd.read_csv(test_eval / "predictions.csv")
    y = (predictions["label"] == "pneumonia").to_numpy().astype(int)
    p = predictions["p_pneumonia"].to_numpy()
    threshold = metrics["model"]["threshold"]
    for m, t in ((metrics["metrics"], threshold), (metrics["metrics_at_0.5"], 0.5)):
        predicted = (p >= t).astype(int)
        assert m["accuracy"] == pytest.approx(accuracy_score(y, predicted))
        assert m["confusion_matrix"] == confusion_matrix(y, predicted, labels=[0, 1]).tolist()
        assert m["per_class"]["pneumonia"]["sensitivity"] == pytest.approx(recall_score(y, predicted))
        assert m["per_class"]["pneumonia"]["specificity"] == pytest.approx(recall_score(1 - y, 1 - predicted))
    assert metrics["metrics"]["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-6)
    assert (predictions["predicted"] == np.where(p >= threshold, "pneumonia", "normal")).all()
    points = {row["operating point"].split()[0]: row for row in metrics["operating_points"]}
    assert points["0.5"]["threshold"] == 0.5 and points["stored"]["threshold"] == pytest.approx(threshold)


def test_bootstrap_intervals_resample_patients_and_contain_the_value(test_eval):
    headline = read_metrics(test_eval)["headline"]
    assert headline["resampled"] == "patients" and headline["n_groups"] == 9  # 3 test patients of each kind
    for key in ("accuracy", "balanced_accuracy"):
        entry = headline[key]
        assert entry["low"] <= entry["value"] <= entry["high"]


def test_calibration_before_and_after_temperature(test_eval, tiny_run):
    calibration = read_metrics(test_eval)["calibration"]
    temperature = json.loads((tiny_run / "model.json").read_text())["temperature"]
    assert calibration["temperature"] == pytest.approx(temperature)
    assert 0.0 <= calibration["ece"] <= 1.0 and 0.0 <= calibration["brier"] <= 2.0
    assert sum(calibration["reliability"]["count"]) == 12
    assert ("ece_before" in calibration) == (temperature != 1.0)


def test_report_states_which_split_served_what(test_eval):
    uses = read_metrics(test_eval)["split_uses"]["uses"]
    assert "never read by training" in uses["test"]
    assert uses["this evaluation"].startswith("the test split") and "12 images" in uses["this evaluation"]


def test_split_val_scores_exactly_the_runs_validation_rows_and_warns(tiny_run, tmp_path):
    out = evaluate(tiny_run, split="val", out=tmp_path / "val", proxies=False, n_boot=50, progress=False,
                   report=False)
    manifest = pd.read_csv(tiny_run / "manifest.csv", keep_default_na=False)
    predictions = pd.read_csv(out / "predictions.csv")
    assert set(predictions["path"]) == set(manifest.loc[manifest["split"] == "val", "path"])
    assert "optimistic" in read_metrics(out)["split_uses"]["note"]


def test_split_all_of_the_data_leaves_out_the_training_images(tiny_run, tiny_kermany, tmp_path):
    out = evaluate(tiny_run, [tiny_kermany], "all", tmp_path / "all", proxies=False, n_boot=50, progress=False,
                   report=False)
    manifest = pd.read_csv(tiny_run / "manifest.csv", keep_default_na=False)
    train = manifest[manifest["split"] == "train"]
    predictions = pd.read_csv(out / "predictions.csv")
    data = read_metrics(out)["data"]
    assert not set(predictions["path"]) & set(train["path"])
    assert not set(predictions["patient_id"]) & set(train["patient_id"])
    assert data["left_out"]["trained_on"] >= len(train)
    assert len(predictions) + data["left_out"]["trained_on"] == len(manifest)
    assert out.name == "all"


def test_max_images_takes_whole_patients_of_every_class(tiny_run, tiny_kermany, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    out = evaluate(run, [tiny_kermany], "test", None, proxies=False, max_images=6, n_boot=50, progress=False,
                   report=False)
    assert out == run / "eval-test-chest_xray"
    predictions = pd.read_csv(out / "predictions.csv")
    full = pd.read_csv(run / "manifest.csv", keep_default_na=False)
    full = full[full["split"] == "test"]
    assert 4 <= len(predictions) < 12 and set(predictions["label"]) == {"normal", "pneumonia"}
    for patient in set(predictions["patient_id"]):  # whole patients only
        assert (predictions["patient_id"] == patient).sum() == (full["patient_id"] == patient).sum()
    assert read_metrics(out)["data"]["left_out"]["subsampled"] == 12 - len(predictions)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_metrics_json_gets_the_permissions_of_the_umask(tmp_path):
    from pneumoscope.evaluation.evaluate import write_json

    previous = os.umask(0o027)
    try:
        path = write_json(tmp_path / "metrics.json", {"accuracy": float("nan")})
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and json.loads(path.read_text()) == {"accuracy": None}

