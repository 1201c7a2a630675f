"""SIGKILL a real `pneumoscope train` process at each place where it writes, resume it each time, and check after
every kill and at the end: no finished epoch is lost or trained twice, the record (metrics.csv) never claims an
epoch the checkpoint does not hold, no temporary file survives a start, every file reads, the final model loads.

The kills come from the process itself at named points (``pneumoscope.faults``: ``PNEUMOSCOPE_KILL_AT``), so each
lands exactly where it is meant to. One run folder goes through all of them in turn (3 epochs of simple_cnn at
32 px on the tiny synthetic data set).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image

from pneumoscope.faults import KILL_ENV
from pneumoscope.files import is_temporary
from pneumoscope.training.checkpointing import load_checkpoint_file

EPOCHS = 3
CLI = [sys.executable, "-c", "from pneumoscope.cli.main import main; main()"]

# (kill point, what is on disk when it hits) in the order one run reaches them
KILLS = [
    ("write:best.ckpt@1", "epoch 1 saved in last.ckpt; best.ckpt being written"),
    ("train_batch@2", "during epoch 2"),
    ("epoch_end@1", "epoch 2 finished, nothing of it written"),
    ("epoch_saved@1", "epoch 2 in last.ckpt; best.ckpt and metrics.csv not written"),
    ("write:last.ckpt@1", "epoch 3's last.ckpt being written"),
    ("write:model.safetensors@1", "training done; the model being written"),
    ("write:summary.json@1", "model written; the summary being written"),
]


def _train_args(data: Path, out: Path) -> list[str]:
    return ["train", "--data", str(data), "--task", "binary", "--model", "simple_cnn", "--no-pretrained",
            "--image-size", "32", "--epochs", str(EPOCHS), "--batch-size", "8", "--device", "cpu",
            "--num-workers", "0", "--out", str(out), "--no-progress", "--set", "data.val_fraction=0.3",
            "--set", "trainer.deterministic=true"]


def _run(args: list[str], cache: Path, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PNEUMOSCOPE_CACHE": str(cache), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    env.pop(KILL_ENV, None)
    if kill_at is not None:
        env[KILL_ENV] = kill_at
    return subprocess.run(CLI + args, env=env, capture_output=True, text=True, timeout=600, check=False)


def _committed_epoch(run_dir: Path) -> int:
    """The last epoch that checkpoints/last.ckpt holds (0 before the first)."""
    last = run_dir / "checkpoints" / "last.ckpt"
    return load_checkpoint_file(last)["epoch"] + 1 if last.is_file() else 0


def _recorded_epochs(run_dir: Path) -> list[int]:
    path = run_dir / "metrics.csv"
    return pd.read_csv(path)["epoch"].tolist() if path.is_file() else []


def _trained_epochs(stdout_and_err: str) -> list[int]:
    """The epochs a process reported as finished (the CLI prints a line per epoch once it is saved)."""
    return [int(n) for n in re.findall(rf"^epoch (\d+)/{EPOCHS} ", stdout_and_err, flags=re.MULTILINE)]


def _temporaries(run_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if is_temporary(p))


def _check_files_read(run_dir: Path) -> None:
    from pneumoscope.data.manifest import read_manifest

    yaml.safe_load((run_dir / "config.yaml").read_text())
    read_manifest(run_dir / "manifest.csv")
    for name in ("last.ckpt", "best.ckpt"):
        if (run_dir / "checkpoints" / name).is_file():
            assert load_checkpoint_file(run_dir / "checkpoints" / name)["state_dict"]


@pytest.mark.slow
def test_a_run_killed_at_every_write_point_loses_nothing(tiny_kermany, tmp_path, isolated_cache):
    run_dir = tmp_path / "run"
    for number, (point, moment) in enumerate(KILLS):
        before = _committed_epoch(run_dir)
        args = _train_args(tiny_kermany, run_dir) if number == 0 else ["train", "--resume", str(run_dir),
                                                                        "--no-progress"]
        process = _run(args, isolated_cache, kill_at=point)
        output = process.stdout + process.stderr
        assert process.returncode == -signal.SIGKILL, f"{point} ({moment}) was not reached:\n{output[-3000:]}"
        # a resumed process goes on after the last saved epoch: it never trains a saved epoch again
        reported = _trained_epochs(output)
        assert reported == list(range(before + 1, before + 1 + len(reported))), (point, before, reported)
        committed = _committed_epoch(run_dir)
        assert committed >= before, point
        recorded = _recorded_epochs(run_dir)  # the record never claims an epoch the checkpoint does not hold
        assert recorded == list(range(1, len(recorded) + 1)) and len(recorded) <= committed, (point, recorded)
        assert not (run_dir / "summary.json").exists()
        _check_files_read(run_dir)
        if point.startswith("write:"):  # a kill mid-write leaves its temporary file (the next start removes it)
            target = point.removeprefix("write:").split("@")[0]
            assert any(Path(t).name.startswith(f".{target}.") for t in _temporaries(run_dir)), point
    assert _committed_epoch(run_dir) == EPOCHS

    finished = _run(["train", "--resume", str(run_dir), "--no-progress"], isolated_cache)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert _trained_epochs(finished.stdout + finished.stderr) == []  # every epoch was already saved
    assert _temporaries(run_dir) == []
    _check_files_read(run_dir)
    assert _recorded_epochs(run_dir) == list(range(1, EPOCHS + 1))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["epochs"] == EPOCHS and summary["resumed"] is True
    with Image.open(run_dir / "curves.png") as curves:
        curves.verify()

    from pneumoscope.inference.loading import load_predictor
    from pneumoscope.models import load_classifier

    model, meta = load_classifier(run_dir)
    assert meta["val_metrics"]["epoch"] == summary["best_epoch"]
    best = load_checkpoint_file(run_dir / "checkpoints" / "best.ckpt")
    assert best["epoch"] + 1 == summary["best_epoch"]  # best.ckpt holds the epoch the record calls best
    for name, value in model.state_dict().items():
        assert (value == best["state_dict"][f"model.{name}"]).all(), name
    image = next((tiny_kermany / "test" / "NORMAL").glob("*.jpeg"))
    row = next(load_predictor(run_dir).predict_files([image]))
    assert not row["error"] and row["label"] in ("normal", "pneumonia")
