"""Accelerator, precision and memory-format resolution."""

from __future__ import annotations

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
