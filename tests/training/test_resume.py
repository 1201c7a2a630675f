"""SIGKILL a real `pneumoscope train` process after its first epoch checkpoint, resume it, and check that the run
ends at the configured epoch count with each epoch once in metrics.csv (and the same figures as without the kill).
tests/training/test_fault_injection.py kills a run at each of its write points."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from pneumoscope.errors import ConfigError

EPOCHS = 6
CLI = [sys.executable, "-c", "from pneumoscope.cli.main import main; main()"]


def _train_args(data: Path, out: Path) -> list[str]:
    return ["train", "--data", str(data), "--task", "binary", "--model", "simple_cnn", "--no-pretrained",
            "--image-size", "64", "--epochs", str(EPOCHS), "--batch-size", "4", "--device", "cpu",
            "--num-workers", "0", "--out", str(out), "--no-progress",
            "--set", "strategy.kind=two_stage", "--set", "strategy.stage1_epochs=2",
            "--set", "trainer.deterministic=true"]


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "PNEUMOSCOPE_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}


@pytest.mark.slow
def test_sigkill_then_resume_finishes_the_same_run(tiny_kermany, tmp_path, isolated_cache):
    run_dir = tmp_path / "killed"
    env = _env(isolated_cache)
    process = subprocess.Popen(CLI + _train_args(tiny_kermany, run_dir), env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    output = process.communicate()[0].decode(errors="replace")
    assert process.returncode == -signal.SIGKILL, output[-2000:]
    from pneumoscope.training.checkpointing import load_checkpoint_file

    saved_epochs = load_checkpoint_file(checkpoint)["epoch"] + 1
    assert 1 <= saved_epochs < EPOCHS, "the kill must land mid-run"
    # metrics.csv follows the checkpoint: it never lists an epoch the checkpoint does not hold
    assert len(pd.read_csv(run_dir / "metrics.csv")) <= saved_epochs
    assert not (run_dir / "summary.json").exists()

    resumed = subprocess.run(CLI + ["train", "--resume", str(run_dir), "--no-progress"], env=env, check=False,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert str(run_dir.resolve()) in resumed.stdout
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert metrics["epoch"].tolist() == list(range(1, EPOCHS + 1))
    assert metrics["stage"].tolist() == [1, 1] + [2] * (EPOCHS - 2)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["epochs"] == EPOCHS and summary["resumed"] is True
    # the epochs trained before the kill count in the run's training time, not only the resumed process's
    assert summary["train_seconds"] == pytest.approx(metrics["seconds"].sum(), abs=0.05)
    assert summary["train_seconds"] > metrics["seconds"].iloc[saved_epochs:].sum()

    # the same run without a kill gives the same epochs (CPU, deterministic, per-epoch seeding)
    straight_dir = tmp_path / "straight"
    straight = subprocess.run(CLI + _train_args(tiny_kermany, straight_dir), env=env, check=False, capture_output=True,
                              text=True, timeout=600)
    assert straight.returncode == 0, straight.stderr[-3000:]
    reference = pd.read_csv(straight_dir / "metrics.csv")
    for column in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
        assert metrics[column].tolist() == pytest.approx(reference[column].tolist(), rel=1e-4, abs=1e-6), column


def test_resume_refuses_a_finished_run_and_a_foreign_folder(tmp_path):
    from pneumoscope.training.resume import resume

    with pytest.raises(ConfigError, match="not found"):
        resume(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(ConfigError, match="config.yaml"):
        resume(tmp_path / "plain")


def test_resume_of_finished_run_is_refused(tiny_config, tmp_path):
    from pneumoscope.training.resume import resume
    from pneumoscope.training.run import train

    run_dir = train(tiny_config(trainer={"epochs": 1}), tmp_path / "done", progress=False)
    with pytest.raises(ConfigError, match="already finished"):
        resume(run_dir)
