"""The public API: inputs of every kind give the same predictions, bad inputs give one clear error or an error row,
configs from a TrainConfig / mapping / YAML file, patient-grouped subsampled splits, and `import pneumoscope` stays
light."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import pneumoscope as ps
from pneumoscope.errors import ConfigError, DataError, ModelError


@pytest.fixture(scope="module")
def model() -> ps.Model:
    return ps.load_model("kermany-binary", backend="pytorch")


def test_import_pneumoscope_loads_no_heavy_library():
    probe = "import json, sys, pneumoscope; print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    loaded = set(json.loads(done.stdout))
    assert not loaded & {"torch", "numpy", "pandas", "lightning", "PIL"}


def test_a_file_its_pil_image_and_its_array_get_the_same_prediction(model, make_xray, tmp_path):
    pixels = make_xray(160, seed=3, pneumonia=True)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    table = model.predict([tmp_path / "x.png", Image.open(tmp_path / "x.png"), pixels,
                           Image.fromarray(pixels).convert("RGB")])
    assert list(table.columns) == model.prediction_columns()
    assert table["path"].tolist() == [str(tmp_path / "x.png"), None, None, None]
    assert table["p_pneumonia"].nunique() == 1 and table["label"].nunique() == 1
    assert table["error"].isna().all() and table["in_scope"].nunique() == 1 and table["scope_reason"].nunique(dropna=False) == 1


def test_sixteen_bit_images_as_pil_and_array_agree(model, make_xray):
    pixels = make_xray(128, seed=5).astype(np.uint16) * 257
    as_pil = model.predict(Image.fromarray(pixels)).loc[0, "p_pneumonia"]
    as_array = model.predict(pixels).loc[0, "p_pneumonia"]
    assert as_pil == pytest.approx(as_array, abs=1e-6)


def test_an_unreadable_file_is_an_error_row_and_the_others_are_predicted(model, make_xray, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not an image")
    table = model.predict([make_xray(96, seed=1), tmp_path / "broken.png"], tta=2)
    assert table.loc[0, "error"] is None and table.loc[0, "label"] in model.classes
    assert "p_std_pneumonia" in table.columns and table.loc[0, "p_std_pneumonia"] >= 0
    assert "broken.png" in table.loc[1, "error"] and table.loc[1, "label"] is None


def test_a_folder_gives_one_row_per_image_file(model, make_xray, tmp_path):
    for i in range(3):
        Image.fromarray(make_xray(80, seed=i)).save(tmp_path / f"{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    table = model.predict(tmp_path, batch_size=2)
    assert sorted(Path(p).name for p in table["path"]) == ["0.png", "1.png", "2.png"]


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 5)), np.zeros((64, 64), dtype=np.int32), "text, not a path?",
                                 3.5])
def test_what_is_not_an_image_is_one_clear_error(model, bad, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError):
        model.predict([np.zeros((64, 64), dtype=np.uint8), bad])


def test_explain_accepts_a_pil_image_and_a_chosen_class(model, make_xray):
    explanation = model.explain(Image.fromarray(make_xray(120, seed=2, pneumonia=True)), target_class="normal")
    assert explanation.target_class == "normal" and explanation.method == "gradcam"
    assert explanation.heatmap.shape == (120, 120) and explanation.overlay.shape == (120, 120, 3)
    assert 0.0 <= explanation.heatmap.min() and explanation.heatmap.max() <= 1.0


def test_explaining_with_an_onnx_file_says_what_to_pass_instead(tmp_path):
    result = ps.export_onnx("kermany-binary", tmp_path / "m.onnx")
    with pytest.raises(ModelError, match="PyTorch model"):
        ps.load_model(result.path).explain(np.full((64, 64), 0.5))


def test_load_model_refuses_another_task():
    with pytest.raises(ModelError, match="trained for task 'binary'"):
        ps.load_model("kermany-binary", task="3class", backend="pytorch")


def test_configs_from_an_object_a_mapping_and_a_yaml_file_agree(tmp_path):
    values = {"preset": "plain", "task": "3class", "trainer": {"epochs": 3}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(values))
    from_file = ps.make_config(tmp_path / "c.yaml")
    assert from_file == ps.make_config(values) == ps.make_config(ps.make_config(values))
    changed = ps.make_config(from_file, overrides={"optim": {"lr": 0.01}})
    assert changed.optim.lr == 0.01 and changed.task == "3class" and changed.preset == "plain"
    assert ps.make_config(values, preset="strong").augment.crop_scale is not None  # the strong recipe's crop
    with pytest.raises(ConfigError, match="already resolved with preset 'plain'"):
        ps.make_config(from_file, preset="strong")
    with pytest.raises(ConfigError, match="TrainConfig, a mapping or a YAML file path"):
        ps.make_config(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="config file not found"):
        ps.make_config(tmp_path / "missing.yaml")


def test_split_dataset_subsamples_whole_patients_and_keeps_the_test_rows(tiny_kermany):
    manifest = ps.read_dataset(tiny_kermany)
    split = ps.split_dataset(manifest, "binary", max_images=20, seed=1)
    kept = split[split["official_split"] != "test"]
    assert 12 <= len(kept) <= 28 and len(split[split["official_split"] == "test"]) == (
        manifest["official_split"] == "test").sum()
    dropped = set(manifest["patient_id"]) - set(split["patient_id"])
    assert dropped and not dropped & set(kept["patient_id"])  # whole patients, never part of one
    with pytest.raises(ConfigError):
        ps.split_dataset(manifest, "5class")


def test_evaluation_summary_of_a_binary_run_has_specificity_and_intervals(tiny_kermany, tmp_path, isolated_cache):
    from tiny_runs import train_tiny

    run = train_tiny(tmp_path / "run", tiny_kermany, isolated_cache)
    result = ps.evaluate(run, split="val", proxies=False, bootstrap=50)
    summary = result.summary()
    assert {"accuracy", "sensitivity pneumonia", "specificity"} <= set(summary.index)
    row = summary.loc["accuracy"]
    assert row["low"] <= row["value"] <= row["high"]
    assert len(result.predictions) == result.metrics["data"]["n"]
