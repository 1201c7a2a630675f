"""Experiment tracking: a tiny run logged to a real local MLflow file store and to TensorBoard event files, read
back through MLflow's client and tensorboard's event reader; resume continues the same MLflow run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tiny_runs import TINY

import pneumoscope as ps
from pneumoscope.errors import ConfigError
from pneumoscope.paths import CACHE_ENV
from pneumoscope.training.config import deep_merge
from pneumoscope.training.tracking import TRACKING_FILE, git_commit, mlflow_uri, read_tracking

EPOCHS = 2


def tracked_config(data: Path, mlruns: Path, **tracking) -> dict:
    return deep_merge(TINY, {"data": {"paths": [str(data)]}, "trainer": {"epochs": EPOCHS},
                             "tracking": {"loggers": ["tensorboard", "mlflow"], "mlflow_uri": str(mlruns),
                                          "experiment": "tiny", "proxies": False, **tracking}})


@pytest.fixture(scope="module")
def tracked_run(tiny_kermany, tmp_path_factory) -> tuple[Path, Path]:
    """(run folder, mlruns folder) of a 2-epoch run logged to TensorBoard and to an MLflow file store."""
    root = tmp_path_factory.mktemp("tracked")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(root / "cache"))
        run = ps.train(tracked_config(tiny_kermany, root / "mlruns"), root / "run", progress=False)
    return run, root / "mlruns"


def client_and_run(run_dir: Path):
    record = read_tracking(run_dir)["mlflow"]
    client = MlflowClient(record["tracking_uri"])
    return client, client.get_run(record["run_id"])


def test_mlflow_holds_config_epochs_final_metrics_with_cis_card_report_commit_and_version(tracked_run):
    run_dir, mlruns = tracked_run
    client, run = client_and_run(run_dir)
    assert read_tracking(run_dir)["mlflow"]["tracking_uri"] == mlruns.resolve().as_uri()
    assert run.info.status == "FINISHED" and run.info.run_name == run_dir.name
    assert client.get_experiment(run.info.experiment_id).name == "tiny"
    # the resolved config
    assert run.data.params["data/image_size"] == "32" and run.data.params["model/name"] == "simple_cnn"
    assert run.data.params["trainer/epochs"] == str(EPOCHS)
    # each epoch's row of metrics.csv, at step = epoch; metrics.csv itself keeps its columns
    rows = pd.read_csv(run_dir / "metrics.csv")
    assert list(rows.columns) == ["epoch", "stage", "train_loss", "train_acc", "val_loss", "val_acc", "lr",
                                  "seconds", "images_per_second"]
    for name in ("train_loss", "val_loss", "val_acc", "lr"):
        history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, name))
        assert [step for step, _ in history] == rows["epoch"].tolist(), name
        assert [value for _, value in history] == pytest.approx(rows[name].tolist()), name
    # the selected model and the final validation evaluation with its CIs
    summary = json.loads((run_dir / "summary.json").read_text())
    metrics = run.data.metrics
    assert metrics["selected/best_epoch"] == summary["best_epoch"]
    assert metrics["selected/threshold"] == pytest.approx(summary["threshold"])
    evaluation = json.loads((run_dir / "eval-val" / "metrics.json").read_text())
    accuracy = evaluation["headline"]["accuracy"]
    assert metrics["eval-val/accuracy"] == pytest.approx(accuracy["value"])
    assert metrics["eval-val/accuracy_ci_low"] == pytest.approx(accuracy["low"])
    assert metrics["eval-val/accuracy_ci_high"] == pytest.approx(accuracy["high"])
    assert metrics["eval-val/accuracy_ci_low"] <= metrics["eval-val/accuracy"] <= metrics["eval-val/accuracy_ci_high"]
    assert "eval-val/sensitivity_pneumonia_ci_high" in metrics and "eval-val/ece" in metrics
    # artefacts: the config, the result files, the model card, the report
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "summary.json", "model.json", "metrics.csv", "curves.png", "MODEL_CARD.md",
            "eval-val"} <= top
    assert {a.path for a in client.list_artifacts(run.info.run_id, "eval-val")} >= {
        "eval-val/metrics.json", "eval-val/report.html", "eval-val/predictions.csv"}
    local = Path(client.download_artifacts(run.info.run_id, "config.yaml", str(run_dir.parent / "download")))
    assert local.read_text() == (run_dir / "config.yaml").read_text()
    card = Path(client.download_artifacts(run.info.run_id, "MODEL_CARD.md", str(run_dir.parent / "download")))
    assert "not a medical device" in card.read_text().lower() and "95 % bootstrap CIs" in card.read_text()
    # code version
    assert run.data.tags["pneumoscope.version"] == ps.__version__
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    assert run.data.tags["mlflow.source.git.commit"].startswith(head)


def test_tensorboard_event_files_hold_the_epochs_the_evaluation_and_the_texts(tracked_run):
    run_dir, _ = tracked_run
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"tensors": 0, "scalars": 0})
    events.Reload()
    rows = pd.read_csv(run_dir / "metrics.csv")
    scalars = events.Tags()["scalars"]
    for name in ("train_loss", "train_acc", "val_loss", "val_acc"):
        logged = sorted((e.step, e.value) for e in events.Scalars(name))
        assert [step for step, _ in logged] == rows["epoch"].tolist(), name
        assert [value for _, value in logged] == pytest.approx(rows[name].tolist(), rel=1e-5), name
    evaluation = json.loads((run_dir / "eval-val" / "metrics.json").read_text())
    assert events.Scalars("eval-val/accuracy")[0].value == pytest.approx(evaluation["headline"]["accuracy"]["value"])
    assert "eval-val/accuracy_ci_low" in scalars and "selected/best_epoch" in scalars
    texts = {tag for tag in events.Tags()["tensors"]}
    assert {"config.yaml/text_summary", "MODEL_CARD.md/text_summary", "tags.txt/text_summary"} <= texts
    config_text = events.Tensors("config.yaml/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "image_size: 32" in config_text
    tags_text = events.Tensors("tags.txt/text_summary")[0].tensor_proto.string_val[0].decode()
    assert f"pneumoscope.version: {ps.__version__}" in tags_text


def test_an_interrupted_tracked_run_resumes_into_the_same_mlflow_run(tiny_kermany, tmp_path, isolated_cache):
    def stop_in_epoch_two(row, trainer):
        if row["epoch"] == 2:
            raise RuntimeError("interrupted")

    config = tracked_config(tiny_kermany, tmp_path / "mlruns", loggers=["mlflow"], evaluate=False)
    config["trainer"]["epochs"] = 3
    with pytest.raises(RuntimeError, match="interrupted"):
        ps.train(config, tmp_path / "run", progress=False, on_epoch=stop_in_epoch_two)
    first = read_tracking(tmp_path / "run")["mlflow"]["run_id"]
    ps.resume(tmp_path / "run", progress=False)
    assert read_tracking(tmp_path / "run")["mlflow"]["run_id"] == first
    client, run = client_and_run(tmp_path / "run")
    assert len(client.search_runs([run.info.experiment_id])) == 1 and run.info.status == "FINISHED"
    steps = {m.step for m in client.get_metric_history(first, "val_loss")}
    assert steps == {1, 2, 3}
    assert pd.read_csv(tmp_path / "run" / "metrics.csv")["epoch"].tolist() == [1, 2, 3]


def test_an_untracked_run_writes_no_tracking_files(tiny_kermany, tmp_path, isolated_cache):
    run = ps.train(deep_merge(TINY, {"data": {"paths": [str(tiny_kermany)]}}), tmp_path / "run", progress=False)
    assert not (run / TRACKING_FILE).exists() and not (run / "tensorboard").exists()
    assert not (run / "eval-val").exists()


def test_tracking_config_keeps_csv_and_refuses_unknown_loggers():
    assert ps.make_config({"tracking": {"loggers": ["mlflow"]}}).tracking.loggers == ["csv", "mlflow"]
    assert ps.make_config().tracking.loggers == ["csv"]
    with pytest.raises(ConfigError, match="tracking.loggers"):
        ps.make_config({"tracking": {"loggers": ["wandb"]}})


def test_mlflow_uri_local_folders_become_absolute_file_uris(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert mlflow_uri(ps.make_config().tracking) == (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert mlflow_uri(ps.make_config().tracking) == "http://tracking.example:5000"
    assert mlflow_uri(ps.make_config({"tracking": {"mlflow_uri": "sqlite:///m.db"}}).tracking) == "sqlite:///m.db"


def test_a_store_mlflow_refuses_is_one_config_error_before_training(tiny_kermany, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "false")  # the user's own setting wins, and MLflow says no
    with pytest.raises(ConfigError, match="cannot log to MLflow"):
        ps.train(tracked_config(tiny_kermany, tmp_path / "mlruns", loggers=["mlflow"]), tmp_path / "run",
                 progress=False)
    assert not (tmp_path / "run" / "metrics.csv").exists()


def test_a_missing_tracking_library_names_the_extra_to_install(tiny_kermany, tmp_path, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else find_spec(name, *a))
    with pytest.raises(ConfigError, match=r"pip install 'pneumoscope\[tracking\]'"):
        ps.train(tracked_config(tiny_kermany, tmp_path / "mlruns", loggers=["mlflow"]), tmp_path / "run",
                 progress=False)


def test_git_commit_outside_a_checkout_is_none(tmp_path):
    assert git_commit(tmp_path) is None
    assert git_commit(Path(__file__).parent) is not None


def test_the_train_command_says_where_the_run_is_logged(tiny_kermany, tmp_path, isolated_cache):
    from typer.testing import CliRunner

    from pneumoscope.cli.main import app

    result = CliRunner().invoke(app, [
        "train", "--data", str(tiny_kermany), "--model", "simple_cnn", "--no-pretrained", "--image-size", "32",
        "--epochs", "1", "--batch-size", "8", "--device", "cpu", "--num-workers", "0", "--no-progress",
        "--out", str(tmp_path / "run"), "--set", "tracking.loggers=[csv,tensorboard,mlflow]",
        "--set", f"tracking.mlflow_uri={tmp_path / 'mlruns'}", "--set", "tracking.evaluate=false"],
        catch_exceptions=False)
    assert result.exit_code == 0, result.output
    run_id = read_tracking(tmp_path / "run")["mlflow"]["run_id"]
    assert f"MLflow run {run_id} (experiment pneumoscope)" in result.output
    assert f"tensorboard --logdir {(tmp_path / 'run' / 'tensorboard').resolve()}" in result.output
    assert MlflowClient((tmp_path / "mlruns").as_uri()).get_run(run_id).info.status == "FINISHED"
