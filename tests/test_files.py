"""Atomic writes: whole files or none, the permissions the umask gives, temporaries recognisable and removable."""

from __future__ import annotations

import os
import stat

import pytest

from pneumoscope.files import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    is_temporary,
    remove_temporaries,
)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    """Set a umask for the test, restore the old one after."""
    previous = os.umask(0o022)

    def set_mask(mask: int) -> None:
        os.umask(mask)

    yield set_mask
    os.umask(previous)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_results_get_the_permissions_the_umask_gives(tmp_path, umask, mask, expected):
    umask(mask)
    assert _mode(atomic_write_text(tmp_path / "metrics.csv", "a,b\n")) == expected
    with atomic_path(tmp_path / "model.onnx", suffix=".onnx") as tmp:
        tmp.write_bytes(b"onnx")
    assert _mode(tmp_path / "model.onnx") == expected
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # what any other file written by the same user gets
    assert _mode(plain) == expected


def test_atomic_path_replaces_on_success_and_cleans_up_on_failure(tmp_path):
    target = tmp_path / "weights.safetensors"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.exists() and is_temporary(tmp)
        tmp.write_bytes(b"complete")
    assert target.read_bytes() == b"complete"
    with pytest.raises(RuntimeError), atomic_path(target, suffix=".onnx") as tmp:
        assert tmp.name.endswith(".tmp.onnx")
        tmp.write_bytes(b"half")
        raise RuntimeError("exporter failed")
    assert target.read_bytes() == b"complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.safetensors"]


def test_temporaries_are_recognised_and_removed_but_results_are_kept(tmp_path):
    results = ["best.ckpt", "metrics.csv", "model.safetensors", ".hidden-config", "notes.tmp"]
    leftovers = [".best.ckpt.k2j4h1x9.tmp", ".model.safetensors.0a1b2c3d.tmp", ".cache.1234.abcd.tmp.npy",
                 ".model.onnx.ffff0000.tmp.onnx"]
    for name in results + leftovers:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".a.csv.12345678.tmp").write_bytes(b"x")  # subfolders are not touched
    assert [p.name for p in remove_temporaries(tmp_path)] == sorted(leftovers)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == sorted(results)
    assert (tmp_path / "sub" / ".a.csv.12345678.tmp").exists()
    assert remove_temporaries(tmp_path / "missing") == []


def test_atomic_write_leaves_only_the_result(tmp_path):
    atomic_write_bytes(tmp_path / "a.bin", b"1")
    atomic_write_bytes(tmp_path / "a.bin", b"2")
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"] and (tmp_path / "a.bin").read_bytes() == b"2"
