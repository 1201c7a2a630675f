"""A full tiny training run: every run-folder file, the model loads back, the operating point comes from validation."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from pneumoscope.files import is_temporary
from pneumoscope.training.callbacks import METRIC_COLUMNS
from pneumoscope.training.config import resolve_config
from pneumoscope.training.run import train

RUN_UMASK = 0o027


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_kermany):
    """One finished 2-epoch run of simple_cnn on the tiny data set (shared by the tests of this module)."""
    cache = tmp_path_factory.getbasetemp() / "pneumoscope-cache"
    previous_umask = os.umask(RUN_UMASK)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PNEUMOSCOPE_CACHE", str(cache))
        config = resolve_config(overrides={
            "task": "binary",
            "data": {"paths": [str(tiny_kermany)], "image_size": 32, "val_fraction": 0.3, "num_workers": 0},
            "model": {"name": "simple_cnn", "pretrained": False},
            "trainer": {"epochs": 2, "batch_size": 8, "device": "cpu", "deterministic": True},
        })
        rows: list[dict] = []
        try:
            run_dir = train(config, tmp_path_factory.mktemp("runs") / "tiny", progress=False,
                            on_epoch=lambda row, trainer: rows.append(row))
        finally:
            os.umask(previous_umask)
    return run_dir, config, rows


def test_run_folder_holds_every_file(tiny_run):
    run_dir, _, _ = tiny_run
    for name in ("config.yaml", "manifest.csv", "metrics.csv", "model.safetensors", "model.json", "curves.png",
                 "summary.json", "checkpoints/last.ckpt", "checkpoints/best.ckpt"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_run_files_get_the_permissions_of_the_umask_and_no_temporary_is_left(tiny_run):
    """Every file of the run folder is as readable as any other file its user writes (the run used umask 027)."""
    run_dir, _, _ = tiny_run
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert len(files) >= 9
    assert {p.relative_to(run_dir).as_posix(): oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {
        p.relative_to(run_dir).as_posix(): oct(0o666 & ~RUN_UMASK) for p in files}
    assert not [p for p in files if is_temporary(p)]


def test_saved_config_is_the_resolved_config(tiny_run):
    run_dir, config, _ = tiny_run
    assert resolve_config(run_dir / "config.yaml") == config
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["preset"] == "recommended"


def test_metrics_csv_has_one_row_per_epoch(tiny_run):
    run_dir, _, rows = tiny_run
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert tuple(metrics.columns) == METRIC_COLUMNS
    assert metrics["epoch"].tolist() == [1, 2]
    assert metrics["stage"].tolist() == [1, 1]
    assert ((metrics["train_acc"] >= 0) & (metrics["train_acc"] <= 1)).all()
    assert (metrics["val_loss"] > 0).all() and (metrics["images_per_second"] > 0).all()
    assert np.allclose(metrics["val_loss"], [r["val_loss"] for r in rows])


def test_manifest_has_patient_grouped_splits_and_test_rows_kept_apart(tiny_run):
    run_dir, _, _ = tiny_run
    manifest = pd.read_csv(run_dir / "manifest.csv", keep_default_na=False, dtype=str)
    assert {"train", "val"} <= set(manifest["split"])
    train_patients = set(manifest.loc[manifest["split"] == "train", "patient_id"])
    val_patients = set(manifest.loc[manifest["split"] == "val", "patient_id"])
    assert not train_patients & val_patients
    assert (manifest.loc[manifest["official_split"] == "test", "split"] == "test").all()


def test_model_loads_back_and_reproduces_the_best_checkpoint(tiny_run):
    from pneumoscope.models import load_classifier
    from pneumoscope.training.checkpointing import load_checkpoint_file

    run_dir, _, _ = tiny_run
    model, meta = load_classifier(run_dir)
    assert meta["architecture"] == "simple_cnn" and meta["task"] == "binary"
    assert meta["classes"] == ["normal", "pneumonia"] and meta["image_size"] == 32
    assert 0.0 <= meta["threshold"] <= 1.0 and meta["threshold_method"] == "youden"
    assert meta["temperature"] > 0
    assert meta["population"]["name"] == "pediatric" and meta["population"]["sources"] == ["kermany"]
    summary = json.loads((run_dir / "summary.json").read_text())
    best = json.loads((run_dir / "model.json").read_text())["val_metrics"]
    assert best["epoch"] == summary["best_epoch"]
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert best["val_loss"] == pytest.approx(metrics["val_loss"].min())
    state = load_checkpoint_file(run_dir / "checkpoints" / "best.ckpt")["state_dict"]
    for name, value in model.state_dict().items():
        assert torch.equal(value, state[f"model.{name}"]), name


def test_summary_reports_time_and_throughput(tiny_run):
    run_dir, _, _ = tiny_run
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["device"] == "cpu"
    assert summary["wall_seconds"] > 0 and summary["mean_images_per_second"] > 0
    assert summary["split_counts"]["val"]["normal"] > 0 and summary["split_counts"]["val"]["pneumonia"] > 0
    assert 0.0 <= summary["val_metrics"]["specificity"] <= 1.0


def test_existing_run_folder_is_not_overwritten(tiny_run):
    from pneumoscope.errors import ConfigError

    run_dir, config, _ = tiny_run
    with pytest.raises(ConfigError, match="already"):
        train(config, run_dir, progress=False)


def test_3class_run_with_weighted_sampler_and_mixup(tiny_config, tmp_path):
    config = tiny_config(task="3class", balance={"method": "weighted_sampler"},
                         loss={"mixup_alpha": 0.2, "label_smoothing": 0.1},
                         optim={"optimizer": "sgd", "scheduler": "plateau", "lr": 0.01}, trainer={"epochs": 1})
    run_dir = train(config, tmp_path / "run3", progress=False)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["threshold"] is None
    assert set(summary["val_metrics"]["recall_per_class"]) == {"normal", "bacteria", "virus"}


def test_oversampling_adds_augmented_minority_copies(tiny_config, tmp_path):
    from pneumoscope.training.augment import BatchAugment
    from pneumoscope.training.balance import class_counts
    from pneumoscope.training.datamodule import PneumoDataModule
    from pneumoscope.training.run import build_run_manifest

    config = tiny_config(balance={"method": "oversample"})
    manifest = build_run_manifest(config, tmp_path, resuming=False)
    data = PneumoDataModule(manifest, config, copy_augment=BatchAugment(config.augment, 32))
    data.setup()
    counts = class_counts(data.train_labels, 2)
    assert counts[0] == counts[1]
    assert len(data.train_set) == counts.sum()
    run_dir = train(config, tmp_path / "run", progress=False)
    assert (run_dir / "summary.json").is_file()


def test_logistic_regression_baseline_writes_a_loadable_run(tiny_config, tmp_path):
    from pneumoscope.models import load_classifier

    run_dir = train(tiny_config(model={"name": "logistic_regression", "pretrained": False}), tmp_path / "lr",
                    progress=False)
    _, meta = load_classifier(run_dir)
    assert meta["architecture"] == "logistic_regression" and 0.0 <= meta["threshold"] <= 1.0
    assert meta["population"]["name"] == "pediatric"
    assert pd.read_csv(run_dir / "metrics.csv")["epoch"].tolist() == [1]
    assert (run_dir / "curves.png").is_file() and (run_dir / "summary.json").is_file()


def test_split_seed_fixes_the_validation_split_across_training_seeds(tiny_config, tmp_path):
    from pneumoscope.training.run import build_run_manifest

    def val_patients(name: str, **sections) -> set[str]:
        manifest = build_run_manifest(tiny_config(**sections), tmp_path / name, resuming=False)
        return set(manifest.loc[manifest["split"] == "val", "patient_id"])

    fixed = [val_patients(f"fixed{seed}", seed=seed, data={"split_seed": 0}) for seed in (1, 2, 3)]
    assert fixed[0] == fixed[1] == fixed[2] == val_patients("seed0", seed=0)  # default: the run's seed
    free = [val_patients(f"free{seed}", seed=seed) for seed in (1, 2, 3)]
    assert len({frozenset(p) for p in free}) > 1  # without it, the training seed moves the split


def test_deterministic_training_keeps_deterministic_kernels_without_filling_new_memory(tiny_config, tmp_path,
                                                                                        monkeypatch):
    monkeypatch.setattr(torch.utils.deterministic, "fill_uninitialized_memory", True)  # torch's default
    seen: list[tuple[bool, bool]] = []
    train(tiny_config(trainer={"epochs": 1, "deterministic": "warn"}), tmp_path / "run", progress=False,
          on_epoch=lambda row, trainer: seen.append((torch.are_deterministic_algorithms_enabled(),
                                                     torch.utils.deterministic.fill_uninitialized_memory)))
    assert seen == [(True, False)]
