"""``robustness.suite`` and ``pneumoscope robustness`` on a tiny trained 3-class run with a synthetic data root
(adult normals, full-resolution originals and their 32-px copies): files, figures against the per-image tables,
when the proxies apply, and what a missing folder does."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from pneumoscope.cli.main import app
from pneumoscope.errors import ConfigError, DataError
from pneumoscope.inference.runs import LoadedRun, load_run
from pneumoscope.robustness.perturbations import list_perturbations
from pneumoscope.robustness.suite import parse_severities, proxies_apply, run_robustness

UNSEEN = 5


@pytest.fixture(scope="module")
def data_root(tmp_path_factory, tiny_kermany, make_xray):
    """covid19_radiography/Normal (5 synthetic normals), chest_xray -> the tiny tree, and 4 full-resolution
    originals (the tree's train images upscaled 3x) in chest_xray_fullres_sample/train."""
    root = tmp_path_factory.mktemp("proxy_root")
    normals = root / "covid19_radiography" / "Normal"
    normals.mkdir(parents=True)
    for i in range(UNSEEN):
        Image.fromarray(make_xray(40, seed=100 + i)).save(normals / f"Normal-{i + 1}.png")
    (root / "chest_xray").symlink_to(tiny_kermany, target_is_directory=True)
    for folder in ("NORMAL", "PNEUMONIA"):
        out = root / "chest_xray_fullres_sample" / "train" / folder
        out.mkdir(parents=True)
        for copy in sorted((tiny_kermany / "train" / folder).glob("*.jpeg"))[:2]:
            with Image.open(copy) as image:
                image.resize((image.width * 3, image.height * 3), Image.BICUBIC).save(out / copy.name, quality=95)
    return root


@pytest.fixture(scope="module")
def suite_result(tiny_three_class_run, data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("robustness")
    result = run_robustness(load_run(tiny_three_class_run), out, data_root=data_root, max_images=6,
                            severities=(2, 4), proxy_images=None, progress=False)
    return out, result


def test_suite_writes_every_file_and_the_stress_table(suite_result):
    out, result = suite_result
    for name in ("robustness.json", "robustness.csv", "unseen_site_normals.csv", "resolution_consistency.csv"):
        assert (out / name).is_file(), name
    assert json.loads((out / "robustness.json").read_text()) == result
    table = pd.read_csv(out / "robustness.csv")
    assert len(table) == 1 + (len(list_perturbations()) - 1) * 2 + 1  # clean, 2 severities each, invert once
    assert set(result["stress_test"]["by_kind"]) == set(table["kind"].iloc[1:])
    assert result["stress_test"]["n_images"] == table["n"].iloc[0] >= 3
    assert result["stress_test"]["clean_accuracy"] == pytest.approx(table["accuracy"].iloc[0])
    worst = result["stress_test"]["worst"]
    assert worst["accuracy"] == pytest.approx(table["accuracy"].iloc[1:].min())
    assert result["settings"]["severities"] == [2, 4] and result["model"]["task"] == "3class"


def test_proxy_summaries_agree_with_their_per_image_tables(suite_result):
    out, result = suite_result
    unseen = pd.read_csv(out / "unseen_site_normals.csv")
    summary = result["unseen_site_normals"]
    assert summary["n"] == len(unseen) == UNSEEN
    assert summary["specificity"] == pytest.approx(unseen["called_normal"].mean())
    assert summary["mean_p_pneumonia"] == pytest.approx(unseen["p_pneumonia"].mean())
    assert summary["threshold"] is None  # a 3-class model decides by arg-max
    pairs = pd.read_csv(out / "resolution_consistency.csv")
    resolution = result["resolution_consistency"]
    assert resolution["n"] == len(pairs) == 4
    assert (pairs["width_original"] == 3 * pairs["width_copy"]).all()
    assert resolution["agreement"] == pytest.approx(pairs["agree"].mean())
    assert resolution["mean_abs_delta_p"] == pytest.approx(np.abs(pairs["delta_p"]).mean())


def test_when_the_proxies_apply(tiny_three_class_run):
    run = load_run(tiny_three_class_run)
    assert proxies_apply(run) == (True, "")
    four = LoadedRun(run.run_dir, run.model, {**run.meta, "task": "4class"}, manifest=run.manifest)
    assert "not 4class" in proxies_apply(four)[1]
    adults = run.manifest.assign(source="covid_radiography")
    assert "not trained on Kermany images only" in proxies_apply(LoadedRun(run.run_dir, run.model, run.meta,
                                                                           manifest=adults))[1]
    assert "no manifest.csv" in proxies_apply(LoadedRun(run.run_dir, run.model, run.meta))[1]


def test_a_missing_proxy_folder_is_skipped_with_its_reason_or_an_error_when_strict(tiny_three_class_run,
                                                                                    tmp_path):
    run = load_run(tiny_three_class_run)
    result = run_robustness(run, tmp_path / "out", data_root=tmp_path / "empty", max_images=3, severities=(1,),
                            perturbations=["jpeg"], progress=False)
    assert "covid19_radiography" in result["unseen_site_normals"]["skipped"]
    assert "chest_xray_fullres_sample" in result["resolution_consistency"]["skipped"]
    with pytest.raises(DataError, match="folder not found"):
        run_robustness(run, tmp_path / "out2", data_root=tmp_path / "empty", max_images=3, severities=(1,),
                       perturbations=["jpeg"], strict=True, progress=False)


def test_parse_severities():
    assert parse_severities("5, 1 3") == (1, 3, 5) and parse_severities(None) == (1, 3, 5)
    for bad in ("0,1", "x", ""):
        with pytest.raises(ConfigError):
            parse_severities(bad)


def test_robustness_command_writes_json_csv_and_html(tiny_three_class_run, data_root, tmp_path):
    out = tmp_path / "rob"
    result = CliRunner().invoke(app, ["robustness", str(tiny_three_class_run), "--data", str(data_root),
                                      "--max-images", "4", "--severities", "3", "--perturbations", "jpeg,invert",
                                      "--out", str(out), "--no-progress"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert pd.read_csv(out / "robustness.csv")["perturbation"].tolist() == ["none", "jpeg", "invert"]
    page = (out / "robustness.html").read_text()
    assert "Generalisation proxies" in page and "Acquisition-shift stress test" in page
    assert "unseen site normals: specificity" in result.output
