"""Atomic writes and safe checkpoint loading."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from pneumoscope.errors import ConfigError
from pneumoscope.files import atomic_write, atomic_write_text
from pneumoscope.training.checkpointing import AtomicCheckpointIO


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "a.txt"
    atomic_write_text(path, "old")
    atomic_write_text(path, "new")
    assert path.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "a.txt"
    atomic_write_text(path, "complete")

    def broken(handle):
        handle.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(path, broken)
    assert path.read_text() == "complete"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_checkpoint_round_trip(tmp_path):
    io = AtomicCheckpointIO()
    state = {"state_dict": {"w": torch.arange(4.0)}, "epoch": 3, "loops": {"x": [1, 2]}, "name": "run"}
    io.save_checkpoint(state, tmp_path / "last.ckpt")
    loaded = io.load_checkpoint(tmp_path / "last.ckpt")
    assert torch.equal(loaded["state_dict"]["w"], state["state_dict"]["w"]) and loaded["epoch"] == 3
    io.remove_checkpoint(tmp_path / "last.ckpt")
    assert not (tmp_path / "last.ckpt").exists()


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_loading_never_runs_pickled_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.ckpt"
    with open(path, "wb") as handle:
        torch.save({"x": _Payload()}, handle, pickle_module=pickle)
    with pytest.raises(ConfigError, match="cannot be read safely"):
        AtomicCheckpointIO().load_checkpoint(path)
    assert not (tmp_path / "PWNED").exists()


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "torn.ckpt"
    AtomicCheckpointIO().save_checkpoint({"w": torch.ones(1000)}, path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ConfigError, match="torn.ckpt"):
        AtomicCheckpointIO().load_checkpoint(path)


def _last(epoch: int, best_epoch: int | None) -> dict:
    state = {"epoch": epoch - 1, "global_step": 10 * epoch, "state_dict": {"model.w": torch.full((2,), float(epoch))},
             "optimizer_states": [{}], "callbacks": {}}
    if best_epoch is not None:
        state["callbacks"]["EpochCheckpoint"] = {"best_epoch": best_epoch, "best_val_loss": 0.1}
    return state


@pytest.mark.parametrize(("best_epoch", "best_file_epoch", "repaired"), [
    (3, 1, True),      # killed after last.ckpt of the best epoch 3, before its best.ckpt: best.ckpt is epoch 1's
    (3, None, True),   # ... and best.ckpt was never written
    (2, 2, False),     # the best epoch is an earlier one: its best.ckpt is complete
    (3, 3, False),     # nothing to do
    (None, 1, False),  # a checkpoint of an older version: no record of the best epoch, left alone
])
def test_best_checkpoint_is_rebuilt_from_last_when_a_kill_came_between_them(tmp_path, best_epoch, best_file_epoch,
                                                                            repaired):
    from pneumoscope.training.checkpointing import load_checkpoint_file, repair_best_checkpoint

    io = AtomicCheckpointIO()
    io.save_checkpoint(_last(3, best_epoch), tmp_path / "last.ckpt")
    if best_file_epoch is not None:
        io.save_checkpoint({"epoch": best_file_epoch - 1, "state_dict": {"model.w": torch.zeros(2)}},
                           tmp_path / "best.ckpt")
    assert repair_best_checkpoint(tmp_path / "last.ckpt", tmp_path / "best.ckpt") is repaired
    if repaired:
        best = load_checkpoint_file(tmp_path / "best.ckpt")
        assert best["epoch"] == 2 and torch.equal(best["state_dict"]["model.w"], torch.full((2,), 3.0))
        assert "optimizer_states" not in best
    elif best_file_epoch is not None:
        assert load_checkpoint_file(tmp_path / "best.ckpt")["epoch"] == best_file_epoch - 1
    assert repair_best_checkpoint(tmp_path / "missing.ckpt", tmp_path / "best.ckpt") is False

