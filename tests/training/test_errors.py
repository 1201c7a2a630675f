"""Bad input gives one clear error: unknown model, unavailable weights, task/label mismatch, one class,
an empty validation split; and the CLI prints it as one line with exit status 2."""

from __future__ import annotations

import shutil
import sys

import pandas as pd
import pytest

from pneumoscope.errors import ConfigError, DataError, ModelError, PneumoscopeError
from pneumoscope.training.run import check_task_data, train


def test_unknown_model_suggests_close_names(tiny_config, tmp_path):
    with pytest.raises(ModelError) as info:
        train(tiny_config(model={"name": "resnet19"}), tmp_path / "run", progress=False)
    assert "resnet19" in str(info.value) and "resnet18" in str(info.value)
    assert not (tmp_path / "run" / "manifest.csv").exists()  # fails before any data work


def test_missing_pretrained_weights_is_an_error_not_scratch_training(tiny_config, tmp_path):
    config = tiny_config(model={"name": "resnet18", "pretrained": True, "weights": str(tmp_path / "none.pth")})
    with pytest.raises(ModelError) as info:
        train(config, tmp_path / "run", progress=False)
    assert "none.pth" in str(info.value)


def test_task_needing_absent_class_names_it(tiny_config, tmp_path):
    with pytest.raises(DataError) as info:
        train(tiny_config(task="4class"), tmp_path / "run", progress=False)
    assert "covid" in str(info.value)


def test_data_set_with_one_class(tiny_kermany, tiny_config, tmp_path):
    one = tmp_path / "chest_xray"
    shutil.copytree(tiny_kermany, one)
    for folder in one.glob("*/PNEUMONIA"):
        shutil.rmtree(folder)
    with pytest.raises(DataError, match="one class|PNEUMONIA|pneumonia"):
        train(tiny_config(data={"paths": [str(one)]}), tmp_path / "run", progress=False)


def _class_folders(root, make_xray, per_class: int):
    from PIL import Image

    for label in ("NORMAL", "PNEUMONIA"):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(make_xray(48, seed=i, pneumonia=label == "PNEUMONIA")).save(root / label / f"{i}.png")
    return root


def test_six_images_per_class_train_and_one_per_class_is_a_clear_error(tiny_config, tmp_path, make_xray):
    six = _class_folders(tmp_path / "six", make_xray, 6)
    run_dir = train(tiny_config(data={"paths": [str(six)]}, trainer={"epochs": 1}), tmp_path / "run6",
                    progress=False)
    assert (run_dir / "summary.json").is_file()
    two = _class_folders(tmp_path / "two", make_xray, 1)
    with pytest.raises(ConfigError, match="every class needs images of at least 2 patients"):
        train(tiny_config(data={"paths": [str(two)]}), tmp_path / "run2", progress=False)


def _manifest(splits: list[str], labels: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"split": splits, "label_binary": labels, "patient_id": [f"p{i}" for i in range(len(splits))]})


def test_empty_validation_split():
    manifest = _manifest(["train"] * 4 + ["test"] * 2, ["normal", "pneumonia"] * 3)
    with pytest.raises(DataError, match="validation split .* is empty"):
        check_task_data(manifest, "binary")


def test_validation_split_missing_a_class():
    manifest = _manifest(["train"] * 4 + ["val"] * 2, ["normal", "pneumonia"] * 2 + ["normal", "normal"])
    with pytest.raises(DataError, match="val split .* no pneumonia"):
        check_task_data(manifest, "binary")


def test_one_class_and_missing_class_messages():
    with pytest.raises(DataError, match="one class"):
        check_task_data(_manifest(["train", "val"], ["normal", "normal"]), "binary")
    counts = check_task_data(_manifest(["train", "train", "val", "val"], ["normal", "pneumonia"] * 2), "binary")
    assert counts == {"train": {"normal": 1, "pneumonia": 1}, "val": {"normal": 1, "pneumonia": 1}}


def test_no_data_given(tmp_path):
    from pneumoscope.training.config import resolve_config

    config = resolve_config(overrides={"model": {"name": "simple_cnn", "pretrained": False},
                                       "trainer": {"device": "cpu"}})
    with pytest.raises(ConfigError, match="--data"):
        train(config, tmp_path / "run", progress=False)


def test_cuda_requested_without_gpu(tiny_config, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: --device cuda is valid here")
    with pytest.raises(ConfigError, match="cuda"):
        train(tiny_config(trainer={"device": "cuda"}), tmp_path / "run", progress=False)


def _cli(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    from pneumoscope.cli.main import main

    monkeypatch.setattr(sys, "argv", ["pneumoscope", *args])
    with pytest.raises(SystemExit) as info:
        main()
    return info.value.code, capsys.readouterr().err


def test_cli_reports_config_typo_in_one_line(monkeypatch, capsys, tmp_path, tiny_kermany):
    config = tmp_path / "exp.yaml"
    config.write_text("trainer:\n  epocs: 3\n")
    code, err = _cli(monkeypatch, capsys, "train", "--data", str(tiny_kermany), "--config", str(config),
                     "--out", str(tmp_path / "run"))
    assert code == 2
    assert err.count("\n") == 1 and "trainer.epocs" in err and "exp.yaml" in err and "epochs" in err


def test_cli_says_which_settings_of_the_config_file_its_flags_replace(monkeypatch, capsys, tmp_path, tiny_kermany):
    config = tmp_path / "exp.yaml"
    config.write_text("trainer:\n  epochs: 10\n  batch_size: 8\n")
    code, err = _cli(monkeypatch, capsys, "train", "--data", str(tiny_kermany), "--config", str(config), "--epochs",
                     "3", "--batch-size", "8", "--model", "resnet19", "--out", str(tmp_path / "run"))
    assert code == 2  # the unknown model stops it before any training
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert notes == [(f"note: trainer.epochs is 10 in {config} and 3 on the command line; the command line's value "
                      "is used.")]


def test_cli_unknown_model_one_line(monkeypatch, capsys, tmp_path, tiny_kermany):
    code, err = _cli(monkeypatch, capsys, "train", "--data", str(tiny_kermany), "--model", "resnet19",
                     "--no-pretrained", "--device", "cpu", "--out", str(tmp_path / "run"))
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "resnet18" in errors[0] and "Traceback" not in err


def test_cli_resume_refuses_config_changes(monkeypatch, capsys, tmp_path):
    code, err = _cli(monkeypatch, capsys, "train", "--resume", str(tmp_path), "--epochs", "9")
    assert code == 2 and "--epochs" in err


def test_errors_are_pneumoscope_errors():
    assert issubclass(DataError, PneumoscopeError) and issubclass(ModelError, PneumoscopeError)
