"""Accelerator, precision and memory-format resolution."""

from __future__ import annotations

import sys

import pytest

from pneumoscope import device
from pneumoscope.errors import ConfigError


@pytest.mark.parametrize(("setting", "accelerator", "native_bf16", "expected"), [
    ("auto", "cpu", True, "bf16-mixed"),
    ("auto", "cpu", False, "32-true"),
    ("32", "cpu", True, "32-true"),
    ("bf16", "cpu", False, "bf16-mixed"),
])
def test_auto_precision_on_cpu_is_bf16_only_where_the_cpu_has_it(monkeypatch, setting, accelerator, native_bf16,
                                                                   expected):
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: native_bf16)
    assert device.resolve_precision(setting, accelerator) == expected


def test_fp16_autocast_on_cpu_is_refused():
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        device.resolve_precision("16", "cpu")


def test_cuda_without_a_gpu_is_a_config_error(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device.resolve_accelerator("auto") == "cpu"
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        device.resolve_accelerator("cuda")


def test_channels_last_auto_is_on():
    assert device.resolve_channels_last("auto") is True
    assert device.resolve_channels_last(False) is False


_WHERE_A_BLOCK_LIVES = """
import ctypes
import numpy as np
from pneumoscope.device import TRAINING_BLOCK_BYTES, keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                      "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
kept = keep_freed_memory(TRAINING_BLOCK_BYTES)
block = np.ones(200 * 1024 * 1024 // 8)  # 200 MB: above glibc's default mmap threshold (at most 32 MB)
mapped_while_used = libc.mallinfo2().hblkhd
del block
print(kept, mapped_while_used, libc.mallinfo2().fordblks)
"""


def _block_placement(keep: str) -> tuple[bool, int, int]:
    """(threshold set, bytes malloc had mapped for the block, free bytes malloc kept after freeing it)."""
    import os
    import subprocess

    env = {**os.environ, device.KEEP_FREED_MEMORY_ENV: keep}
    out = subprocess.run([sys.executable, "-c", _WHERE_A_BLOCK_LIVES], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    return out[0] == "True", int(out[1]), int(out[2])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only (elsewhere nothing changes)")
def test_a_freed_large_block_stays_for_reuse_instead_of_going_back_to_the_system():
    block = 200 * 1024 * 1024
    kept, mapped, free_after = _block_placement("1")
    assert kept and mapped < block and free_after >= block  # served from malloc's heap, kept there when freed
    kept, mapped, free_after = _block_placement("0")
    assert not kept and mapped >= block and free_after < block  # glibc's default: its own mapping, unmapped


def test_keep_freed_memory_only_ever_raises_the_threshold(monkeypatch):
    monkeypatch.delenv(device.KEEP_FREED_MEMORY_ENV, raising=False)
    monkeypatch.setattr(device, "_kept_block_bytes", 512 * 1024 * 1024)
    calls = []
    monkeypatch.setattr(device.ctypes, "CDLL", lambda _name: type("libc", (), {
        "mallopt": staticmethod(lambda option, value: calls.append((option, value)) or 1)})())
    assert device.keep_freed_memory(128 * 1024 * 1024)  # below what is set: nothing to do
    assert calls == []
    if sys.platform.startswith("linux"):
        assert device.keep_freed_memory(device.TRAINING_BLOCK_BYTES)
        assert calls == [(-3, device.TRAINING_BLOCK_BYTES), (-1, 2 * device.TRAINING_BLOCK_BYTES)]


def test_skipping_the_memory_fill_leaves_deterministic_algorithms_as_they_are(monkeypatch):
    import torch

    monkeypatch.setattr(torch.utils.deterministic, "fill_uninitialized_memory", True)
    before = torch.are_deterministic_algorithms_enabled()
    device.skip_uninitialized_memory_fill()
    assert torch.utils.deterministic.fill_uninitialized_memory is False
    assert torch.are_deterministic_algorithms_enabled() == before
