"""Bad input to ``pneumoscope evaluate``: a binary model on 4-class labels, a run folder without a trained model,
labels the model does not know; each one clear error (exit status 2 from the CLI, no traceback)."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from eval_helpers import cli_error, write_csv_data

from pneumoscope.errors import ConfigError, DataError, ModelError
from pneumoscope.evaluation.evaluate import evaluate
from pneumoscope.evaluation.selection import select_images
from pneumoscope.inference.runs import LoadedRun, load_run
from pneumoscope.results import read_metrics


def _images(tiny_kermany, folder: str, count: int) -> list:
    return sorted((tiny_kermany / "train" / folder).glob("*.jpeg"))[:count]


def test_binary_model_on_four_class_labels(tiny_run, tiny_kermany, tmp_path, monkeypatch, capsys):
    rows = [(p, "normal") for p in _images(tiny_kermany, "NORMAL", 3)]
    rows += [(p, "covid") for p in _images(tiny_kermany, "PNEUMONIA", 3)]
    data = write_csv_data(tmp_path / "four_class.csv", rows)
    with pytest.raises(ModelError, match="binary model was not trained on COVID-19.*4-class labels"):
        evaluate(tiny_run, [data], "all", tmp_path / "out", progress=False)
    err = cli_error(monkeypatch, capsys, "evaluate", tiny_run, "--data", data, "--split", "all", "--no-progress")
    assert str(tiny_run) in err and "covid: 3" in err and "--skip-unknown-labels" in err


def test_skip_unknown_labels_leaves_them_out_and_counts_them(tiny_run, tiny_kermany, tmp_path):
    rows = [(p, "normal") for p in _images(tiny_kermany, "NORMAL", 4)]
    rows += [(p, "covid") for p in _images(tiny_kermany, "PNEUMONIA", 2)]
    rows += [(p, "lung_opacity") for p in _images(tiny_kermany, "PNEUMONIA", 5)[2:]]
    data = write_csv_data(tmp_path / "mixed.csv", rows)
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    out = evaluate(run, [data], "all", tmp_path / "out", skip_unknown_labels=True, proxies=False, n_boot=20,
                   progress=False, report=False)
    data_facts = read_metrics(out)["data"]
    assert data_facts["left_out"]["unknown_labels"] == {"covid": 2, "lung_opacity": 3}
    predictions = pd.read_csv(out / "predictions.csv")
    assert set(predictions["label"]) == {"normal"}


def test_labels_the_model_does_not_know(tiny_run, tiny_kermany, tmp_path, monkeypatch, capsys):
    data = write_csv_data(tmp_path / "opacity.csv", [(p, "lung_opacity") for p in _images(tiny_kermany,
                                                                                            "PNEUMONIA", 2)]
                          + [(p, "normal") for p in _images(tiny_kermany, "NORMAL", 2)])
    err = cli_error(monkeypatch, capsys, "evaluate", tiny_run, "--data", data, "--no-progress")
    assert "labels this binary model does not know (lung opacity: 2 images)" in err
    assert "normal, pneumonia" in err


def test_three_class_model_on_pneumonia_of_unknown_cause(tiny_run, tmp_path, make_xray):
    from PIL import Image

    for folder, sick in (("NORMAL", False), ("PNEUMONIA", True)):
        (tmp_path / "folders" / folder).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(make_xray(32, seed=i, pneumonia=sick)).save(tmp_path / "folders" / folder / f"{i}.png")
    loaded = load_run(tiny_run)
    three = LoadedRun(run_dir=tiny_run, model=loaded.model,
                      meta={**loaded.meta, "task": "3class", "classes": ["normal", "bacteria", "virus"]})
    with pytest.raises(ModelError, match=r"pneumonia \(cause unknown\): 2 images.*normal, bacteria, virus"):
        select_images(three, [tmp_path / "folders"], "all")


def test_run_folder_without_a_checkpoint(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match="no trained model"):
        evaluate(empty, progress=False)
    unfinished = tmp_path / "unfinished"
    (unfinished / "checkpoints").mkdir(parents=True)
    (unfinished / "checkpoints" / "last.ckpt").write_bytes(b"not a real checkpoint")
    err = cli_error(monkeypatch, capsys, "evaluate", unfinished, "--no-progress")
    assert "training has not finished" in err and f"pneumoscope train --resume {unfinished}" in err
    with pytest.raises(ConfigError, match="run folder not found"):
        load_run(tmp_path / "nowhere")


def test_a_test_split_that_does_not_exist_and_an_unknown_split(tiny_run, tmp_path, make_xray):
    from PIL import Image

    root = tmp_path / "tree"
    for folder, sick in (("NORMAL", False), ("PNEUMONIA", True)):
        (root / folder).mkdir(parents=True)
        Image.fromarray(make_xray(32, seed=1, pneumonia=sick)).save(root / folder / "a.png")
    run = load_run(tiny_run)
    with pytest.raises(ConfigError, match="unknown split 'train'"):
        select_images(run, None, "train")
    with pytest.raises(DataError, match="no test split.*--split all"):
        select_images(run, [root], "test")
    assert select_images(run, [root], "auto").split == "all"
