"""CI runs one published experiment in a tiny form: experiments/exp4 (3-class baselines) restricted to logistic
regression + the simple CNN, on ~200 real Kermany images at 32 px for one epoch, through ``pneumoscope compare``."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from eval_helpers import invoke

EXPERIMENT = Path(__file__).resolve().parents[2] / "experiments" / "exp4_3class_baselines.yaml"
KEEP = ("logistic_regression", "simple_cnn")


@pytest.mark.realdata
def test_experiment_4_runs_end_to_end_in_tiny_form(real_data, tmp_path):
    grid = yaml.safe_load(EXPERIMENT.read_text(encoding="utf-8"))
    grid["name"] = "exp4-ci"
    grid["grid"]["model"] = {name: grid["grid"]["model"][name] for name in KEEP}
    path = tmp_path / "exp4_ci.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False), encoding="utf-8")

    invoke("compare", path, "--out", tmp_path / "runs", "--data", real_data / "chest_xray",
           "--set", "data.max_images=200", "--set", "data.image_size=32", "--set", "trainer.epochs=1",
           "--set", "trainer.device=cpu", "--set", "data.num_workers=0", "--no-progress")

    folder = tmp_path / "runs" / "exp4-ci"
    table = pd.read_csv(folder / "comparison.csv")
    assert table["model"].tolist() == list(KEEP)
    for name, row in zip(KEEP, table.itertuples(), strict=True):
        config = yaml.safe_load((folder / name / "config.yaml").read_text())
        # the paper's set-up, with only the size cut by --set
        assert config["task"] == "3class" and config["model"]["name"] == name
        assert config["optim"]["optimizer"] == "sgd" and config["trainer"]["batch_size"] == 16
        assert config["data"]["image_size"] == 32 and config["trainer"]["epochs"] == 1
        manifest = pd.read_csv(folder / name / "manifest.csv")
        assert manifest["split"].isin(["train", "val"]).sum() <= 260  # the patient-grouped subsample
        metrics = json.loads((folder / name / "eval-val" / "metrics.json").read_text())["metrics"]
        assert row.accuracy == pytest.approx(metrics["accuracy"], abs=1e-5)
        assert 0.0 <= row.accuracy_low <= row.accuracy <= row.accuracy_high <= 1.0
    assert "72.3" in (folder / "comparison.md").read_text()  # the paper's claim travels with the table
