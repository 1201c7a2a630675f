"""Experiment grids (format, cells, overrides) and ``pneumoscope compare`` (Table II with CIs / ± std), on the tiny
synthetic tree: a 2 × 1 grid run through the CLI, resumed, and compared with a plain run folder."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from eval_helpers import invoke

from pneumoscope.errors import ConfigError, DataError
from pneumoscope.evaluation.compare import comparison_table, labels
from pneumoscope.evaluation.grid import cell_config, read_grid
from pneumoscope.metrics.classification import classification_metrics

GRID = {
    "name": "tiny-grid",
    "description": "Two optimisers on a tiny CNN.",
    "paper": {"claim": "99 % accuracy", "reference": "A. Author, 2020"},
    "base": {"task": "binary", "preset": "plain", "data": {"image_size": 32, "val_fraction": 0.3, "num_workers": 0},
             "model": {"name": "simple_cnn", "pretrained": False},
             "trainer": {"epochs": 3, "batch_size": 8, "device": "cpu", "deterministic": True}},
    "grid": {"model": {"simple": {"model": {"name": "simple_cnn"}}},
             "optimizer": {"sgd": {"optim": {"optimizer": "sgd", "lr": 0.01}},
                           "adagrad": {"optim": {"optimizer": "adagrad", "lr": 0.01}}}},
}


def write_grid(path, **changes):
    path.write_text(yaml.safe_dump({**GRID, **changes}, sort_keys=False), encoding="utf-8")
    return path


def test_grid_cells_are_the_cartesian_product_merged_in_axis_order(tmp_path, tiny_kermany):
    grid = read_grid(write_grid(tmp_path / "g.yaml", grid={
        "model": {"a": {"model": {"name": "simple_cnn"}, "optim": {"lr": 0.1}},
                  "b": {"model": {"name": "alrelu_cnn"}}},
        "lr": {"low": {"optim": {"lr": 0.001}}, "high": {"optim": {"lr": 0.05}}}}))
    cells = grid.cells()
    assert [c.key for c in cells] == ["a__low", "a__high", "b__low", "b__high"]
    assert cells[0].config["optim"]["lr"] == 0.001  # the later axis wins
    assert cells[0].config["trainer"]["epochs"] == 3  # base kept
    config = cell_config(grid, cells[2], data=[tiny_kermany], settings=["trainer.epochs=1", "data.image_size=48"])
    assert config.model.name == "alrelu_cnn" and config.trainer.epochs == 1 and config.data.image_size == 48
    assert config.data.paths == [str(tiny_kermany)] and config.preset == "plain"


@pytest.mark.parametrize("change, message", [
    ({"gird": {}}, "unknown grid key"),
    ({"name": "a b"}, "must be a folder name"),
    ({"cv": {"folds": 1}}, "cv"),
    ({"grid": {"model": {"a__b": {}}}}, "without '__'"),
    ({"grid": {"model": []}}, "must map value names"),
    ({"base": {"optim": {"lrr": 0.1}}}, "cell simple__sgd: unknown config key 'optim.lrr'"),
])
def test_bad_grid_files_name_the_file_and_the_key(tmp_path, change, message):
    path = write_grid(tmp_path / "bad.yaml", **change)
    with pytest.raises(ConfigError, match=message) as info:
        grid = read_grid(path)
        cell_config(grid, grid.cells()[0])
    assert str(path) in str(info.value)


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory, tiny_kermany):
    """The 2-cell grid run and compared through the CLI (``--set`` cuts the epochs to 1 for every cell)."""
    root = tmp_path_factory.mktemp("grid")
    path = write_grid(root / "tiny.yaml")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PNEUMOSCOPE_CACHE", str(tmp_path_factory.getbasetemp() / "pneumoscope-cache"))
        output = invoke("compare", path, "--out", root / "runs", "--data", tiny_kermany, "--set",
                        "trainer.epochs=1", "--no-progress")
    return root, path, output


def test_compare_runs_the_grid_and_writes_comparison_table(grid_run):
    root, _, output = grid_run
    folder = root / "runs" / "tiny-grid"
    for cell in ("simple__sgd", "simple__adagrad"):
        assert json.loads((folder / cell / "cell.json").read_text())["values"] == {"model": "simple",
                                                                                   "optimizer": cell[8:]}
        assert yaml.safe_load((folder / cell / "config.yaml").read_text())["trainer"]["epochs"] == 1
        assert (folder / cell / "eval-val" / "metrics.json").is_file()
    table = pd.read_csv(folder / "comparison.csv")
    assert table["strategy"].tolist() == ["sgd", "adagrad"] and (table["model"] == "simple").all()
    for cell, row in zip(("simple__sgd", "simple__adagrad"), table.itertuples()):
        metrics = json.loads((folder / cell / "eval-val" / "metrics.json").read_text())
        assert row.accuracy == pytest.approx(metrics["metrics"]["accuracy"], abs=1e-5)
        assert row.accuracy_low <= row.accuracy <= row.accuracy_high
        assert row.pneumonia_f1 == pytest.approx(metrics["metrics"]["per_class"]["pneumonia"]["f1"], abs=1e-5)
    markdown = (folder / "comparison.md").read_text()
    assert "| model | strategy | evaluated on |" in markdown and "Paper's claim: 99 % accuracy" in markdown
    html = (folder / "comparison.html").read_text()
    assert "Models and strategies" in html and "A. Author, 2020" in html and "| simple | sgd |" in output


def test_a_second_compare_skips_finished_cells_and_refuses_a_changed_grid(grid_run, tiny_kermany, monkeypatch):
    import pneumoscope.training.run as run_module

    root, path, _ = grid_run

    def no_training(*args, **kwargs):
        raise AssertionError("a finished cell was trained again")

    monkeypatch.setattr(run_module, "train", no_training)
    grid_folder = next(p.parent for p in (root / "runs").rglob("grid.yaml"))
    (grid_folder / ".grid.yaml.0123abcd.tmp").write_text("half")  # left by a kill mid-write
    output = invoke("compare", path, "--out", root / "runs", "--data", tiny_kermany, "--set", "trainer.epochs=1",
                    "--no-progress")
    assert "| simple | adagrad |" in output
    assert not (grid_folder / ".grid.yaml.0123abcd.tmp").exists()
    from pneumoscope.evaluation.compare import compare

    with pytest.raises(ConfigError, match="another config"):
        compare([path], root / "runs", [tiny_kermany], ["trainer.epochs=2"], progress=False)


def test_compare_run_folders_and_refuse_unfinished_ones(grid_run, tiny_run, tmp_path):
    root, _, _ = grid_run
    cell = root / "runs" / "tiny-grid" / "simple__sgd"
    invoke("compare", cell, tiny_run, "--out", tmp_path / "cmp", "--no-progress")
    table = pd.read_csv(tmp_path / "cmp" / "comparison.csv")
    assert table["strategy"].tolist()[0] == "sgd" and table["model"].tolist()[1] == "simple_cnn"
    assert table["evaluated_on"].str.startswith("val").all()
    with pytest.raises(DataError, match="not a finished run"):
        from pneumoscope.evaluation.compare import compare

        compare([tmp_path], tmp_path / "cmp2", progress=False)


def _metrics(seed: int):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, 60)
    probs = rng.dirichlet(np.ones(3), 60)
    probs[np.arange(60), y] += 1.0
    return classification_metrics(y, probs / probs.sum(1, keepdims=True), ["normal", "bacteria", "virus"])


def test_comparison_table_mean_and_std_for_folds_and_intervals_for_single_runs():
    folds = [_metrics(s) for s in range(3)]
    single = _metrics(7)
    ci = {"accuracy": {"value": single["accuracy"], "low": 0.5, "high": 0.9},
          "per_class": {c: {"sensitivity": {"low": 0.1, "high": 0.2}} for c in ("normal", "bacteria", "virus")}}
    frame = comparison_table([
        {"model": "m1", "strategy": "cv", "evaluated_on": "3-fold cv", "metrics": folds, "headline": None},
        {"model": "m2", "strategy": "single", "evaluated_on": "val", "metrics": single, "headline": ci},
    ])
    assert frame.loc[0, "accuracy"] == pytest.approx(np.mean([m["accuracy"] for m in folds]))
    assert frame.loc[0, "accuracy_std"] == pytest.approx(np.std([m["accuracy"] for m in folds], ddof=1))
    assert np.isnan(frame.loc[0, "accuracy_low"]) and frame.loc[1, "accuracy_high"] == 0.9
    assert list(frame.columns[:8]) == ["model", "strategy", "evaluated_on", "runs", "accuracy", "accuracy_std",
                                       "accuracy_low", "accuracy_high"]
    assert {"virus_precision", "virus_sensitivity_low", "virus_f1_std"} <= set(frame.columns)


def test_labels_of_plain_runs_and_grid_cells(tmp_path):
    plain = tmp_path / "my-run"
    plain.mkdir()
    assert labels(plain, {"model": {"name": "resnet18"}}) == ("resnet18", "my-run")
    cell = tmp_path / "cell"
    cell.mkdir()
    (cell / "cell.json").write_text(json.dumps({"values": {"optimizer": "sgd", "model": "vgg16", "aug": "x"}}))
    assert labels(cell, {"model": {"name": "vgg16"}}) == ("vgg16", "sgd / x")


def test_a_grid_with_cv_runs_each_cell_as_a_cross_validation(tmp_path, tiny_kermany, monkeypatch):
    import pneumoscope.evaluation.cv as cv_module
    from pneumoscope.evaluation.grid import run_grid

    calls = []
    monkeypatch.setattr(cv_module, "cross_validate",
                        lambda config, folds, folder, **kw: calls.append((config.optim.optimizer, folds, folder)))
    grid = read_grid(write_grid(tmp_path / "cv.yaml", cv={"folds": 4}))
    folders = run_grid(grid, tmp_path / "runs", data=[tiny_kermany], progress=False)
    assert calls == [("sgd", 4, folders[0]), ("adagrad", 4, folders[1])]
    assert folders[0] == tmp_path / "runs" / "tiny-grid" / "simple__sgd"
    assert json.loads((folders[1] / "cell.json").read_text())["values"]["optimizer"] == "adagrad"
    assert (tmp_path / "runs" / "tiny-grid" / "grid.yaml").read_text() == (tmp_path / "cv.yaml").read_text()


def test_a_failing_cell_is_recorded_and_the_other_cells_still_run(tmp_path, tiny_kermany, monkeypatch, capsys):
    """Pretrained ResNet18 weights are not available offline: that cell fails with the weights message, the
    simple CNN cell is trained and compared, and the command exits 2 naming the failed cell."""
    from pneumoscope.cli.main import main

    monkeypatch.setenv("PNEUMOSCOPE_OFFLINE", "1")
    monkeypatch.setenv("PNEUMOSCOPE_CACHE", str(tmp_path / "cache"))
    path = write_grid(tmp_path / "mixed.yaml", grid={
        "model": {"resnet18_imagenet": {"model": {"name": "resnet18", "pretrained": True}},
                  "simple": {"model": {"name": "simple_cnn"}}}})
    monkeypatch.setattr("sys.argv", ["pneumoscope", "compare", str(path), "--out", str(tmp_path / "runs"), "--data",
                                     str(tiny_kermany), "--set", "trainer.epochs=1", "--no-progress"])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    err = err[err.index("error: "):]
    assert "1 of 2 grid cells failed: resnet18_imagenet" in err and "weights" in err.lower()
    root = tmp_path / "runs" / "tiny-grid"
    assert json.loads((root / "resnet18_imagenet" / "failed.json").read_text())["cell"] == "resnet18_imagenet"
    table = pd.read_csv(root / "comparison.csv")
    assert table["model"].tolist() == ["simple"]
    assert (root / "simple" / "summary.json").is_file()
