"""``pneumoscope cv`` on the tiny synthetic tree: patient-grouped folds, held-out scoring, mean ± std, pooled
confusion matrix, resumability and refusal of a changed config."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from eval_helpers import invoke
from tiny_runs import TINY, tiny_config

from pneumoscope.errors import ConfigError
from pneumoscope.evaluation.cv import cross_validate, fold_manifest

FOLDS = 3


@pytest.fixture(scope="module")
def cv_dir(tmp_path_factory, tiny_kermany):
    """A 3-fold cv of the tiny config, run through the CLI."""
    folder = tmp_path_factory.mktemp("cv") / "cv"
    config = tmp_path_factory.mktemp("cv_config") / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY), encoding="utf-8")
    cache = tmp_path_factory.getbasetemp() / "pneumoscope-cache"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PNEUMOSCOPE_CACHE", str(cache))
        output = invoke("cv", config, "--folds", FOLDS, "--out", folder, "--data", tiny_kermany, "--bootstrap",
                        50, "--no-progress")
    assert "3-fold cross-validation" in output and "sensitivity pneumonia" in output
    return folder


def test_cv_writes_its_files_and_one_run_per_fold(cv_dir):
    for name in ("config.yaml", "manifest.csv", "cv_folds.csv", "cv_summary.csv", "cv_summary.json",
                 "cv_per_class.csv", "cv_report.html"):
        assert (cv_dir / name).is_file(), name
    for k in range(FOLDS):
        assert (cv_dir / f"fold-{k}" / "model.safetensors").is_file()
        assert (cv_dir / f"fold-{k}" / "eval-test" / "metrics.json").is_file()


def test_folds_are_patient_grouped_and_each_image_is_held_out_once(cv_dir):
    manifest = pd.read_csv(cv_dir / "manifest.csv", keep_default_na=False)
    in_cv = manifest[manifest["fold"].astype(int) >= 0]
    assert sorted(in_cv["fold"].astype(int).unique()) == list(range(FOLDS))
    assert (in_cv.groupby("patient_id")["fold"].nunique() == 1).all()
    held_out = []
    for k in range(FOLDS):
        fold = pd.read_csv(cv_dir / f"fold-{k}" / "manifest.csv", keep_default_na=False)
        test, train, val = (set(fold.loc[fold["split"] == s, "patient_id"]) for s in ("test", "train", "val"))
        assert test and train and val and not test & train and not test & val and not train & val
        assert (fold.loc[fold["split"] == "test", "cv_fold"].astype(int) == k).all()
        official_test = fold["official_split"] == "test"
        assert (fold.loc[official_test, "split"] == "excluded").all()  # the archive's test split is not used
        predictions = pd.read_csv(cv_dir / f"fold-{k}" / "eval-test" / "predictions.csv")
        assert set(predictions["path"]) == set(fold.loc[fold["split"] == "test", "path"])
        held_out += predictions["path"].tolist()
    assert sorted(held_out) == sorted(in_cv["path"])


def test_summary_is_mean_and_std_of_the_folds_and_the_pooled_confusion_their_sum(cv_dir):
    folds = pd.read_csv(cv_dir / "cv_folds.csv")
    summary = json.loads((cv_dir / "cv_summary.json").read_text())
    fold_metrics = [json.loads((cv_dir / f"fold-{k}" / "eval-test" / "metrics.json").read_text())["metrics"]
                    for k in range(FOLDS)]
    accuracies = [m["accuracy"] for m in fold_metrics]
    assert folds["accuracy"].tolist() == pytest.approx(accuracies)
    assert summary["summary"]["accuracy"]["mean"] == pytest.approx(np.mean(accuracies))
    assert summary["summary"]["accuracy"]["std"] == pytest.approx(np.std(accuracies, ddof=1))
    sensitivities = [m["per_class"]["normal"]["sensitivity"] for m in fold_metrics]
    per_class = pd.read_csv(cv_dir / "cv_per_class.csv").set_index("class")
    assert per_class.at["normal", "sensitivity"] == pytest.approx(np.mean(sensitivities))
    pooled = np.sum([m["confusion_matrix"] for m in fold_metrics], axis=0)
    assert summary["pooled_confusion_matrix"] == pooled.tolist()
    assert pooled.sum() == sum(summary["n_per_fold"])


def test_cv_resumes_skipping_finished_folds_and_refuses_another_config(cv_dir, tiny_kermany, tmp_path,
                                                                       monkeypatch):
    import pneumoscope.training.run as run_module

    copy = tmp_path / "cv"
    shutil.copytree(cv_dir, copy)
    (copy / "cv_summary.json").unlink()
    shutil.rmtree(copy / "fold-1" / "eval-test")  # fold 1 trained but not scored yet
    (copy / ".cv_summary.json.0123abcd.tmp").write_text("{")  # left by a kill mid-write

    def no_training(*args, **kwargs):
        raise AssertionError("a finished fold was trained again")

    monkeypatch.setattr(run_module, "train", no_training)
    config = tiny_config(tiny_kermany)
    cross_validate(config, FOLDS, copy, progress=False, n_boot=20)
    assert (copy / "cv_summary.json").is_file() and (copy / "fold-1" / "eval-test" / "metrics.json").is_file()
    assert not (copy / ".cv_summary.json.0123abcd.tmp").exists()
    with pytest.raises(ConfigError, match="another config"):
        cross_validate(tiny_config(tiny_kermany, trainer={"epochs": 2}), FOLDS, copy, progress=False)
    with pytest.raises(ConfigError, match="split into 3 folds, not 4"):
        cross_validate(config, 4, copy, progress=False)


def test_fold_manifest_holds_out_one_fold_as_test(cv_dir, tiny_kermany):
    from pneumoscope.data.manifest import read_manifest

    manifest = read_manifest(cv_dir / "manifest.csv")
    table = fold_manifest(manifest, 0, tiny_config(tiny_kermany))
    assert (table.loc[table["split"] == "test", "cv_fold"] == 0).all()
    assert (table["fold"] == -1).all()
    assert set(table.loc[table["cv_fold"].isin([1, 2]), "split"]) == {"train", "val"}


def test_training_never_reads_the_held_out_rows(cv_dir, tiny_kermany, tmp_path):
    """Structural test-split rule: a fold's held-out (``test``) rows point to files that do not exist, and
    training, epoch selection, threshold and temperature all still run."""
    from pneumoscope.data.manifest import read_manifest
    from pneumoscope.training.run import train

    config = tiny_config(tiny_kermany)
    table = fold_manifest(read_manifest(cv_dir / "manifest.csv"), 1, config)
    held_out = table["split"] == "test"
    table.loc[held_out, "path"] = [str(tmp_path / "gone" / f"{i}.jpeg") for i in range(int(held_out.sum()))]
    run = train(config, tmp_path / "run", progress=False, manifest=table)
    meta = json.loads((run / "model.json").read_text())
    assert meta["threshold"] is not None and meta["temperature"] > 0
    assert not (tmp_path / "gone").exists()


def test_a_cv_folder_is_one_comparison_row_with_mean_and_std(cv_dir):
    from pneumoscope.evaluation.compare import comparison_table, folder_entries

    entries = folder_entries(cv_dir, progress=False)
    assert len(entries) == 1 and entries[0]["evaluated_on"] == "3-fold cv (held-out folds)"
    frame = comparison_table(entries)
    folds = pd.read_csv(cv_dir / "cv_folds.csv")
    assert frame.loc[0, "runs"] == FOLDS and frame.loc[0, "model"] == "simple_cnn"
    assert frame.loc[0, "accuracy"] == pytest.approx(folds["accuracy"].mean(), rel=1e-5)  # the CSV keeps 6 digits
    assert frame.loc[0, "accuracy_std"] == pytest.approx(folds["accuracy"].std(ddof=1), rel=1e-4)
