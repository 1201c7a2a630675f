"""Accelerator, precision and memory format: what a run or a scorer uses on this machine (``auto`` resolved here,
once, for training, evaluation and prediction alike)."""

from __future__ import annotations

from pneumoscope.errors import ConfigError


def resolve_accelerator(device: str) -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``; ``cuda`` without a GPU is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but no CUDA GPU is visible to PyTorch.",
                          fix="use --device cpu (or auto), or install a CUDA build of torch.")
    return device


def resolve_precision(precision: str, accelerator: str) -> str:
    """Lightning precision. ``auto``: bf16 autocast on a GPU that has it, fp16 autocast on older GPUs; on a CPU, bf16
    autocast where the CPU has bf16 instructions (AVX512-BF16 or AMX: 2.8 instead of 4.1 GB peak memory and no
    slower, docs/PERFORMANCE.md), else fp32 (bf16 emulated in software would be several times slower)."""
    import torch

    if precision == "auto":
        if accelerator != "cuda":
            return "bf16-mixed" if cpu_has_native_bf16() else "32-true"
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    if precision == "16" and accelerator != "cuda":
        raise ConfigError("trainer.precision 16 (fp16 autocast) needs a CUDA GPU.", fix="use 32 or bf16 on CPU.")
    return {"32": "32-true", "bf16": "bf16-mixed", "16": "16-mixed"}[precision]


def cpu_has_native_bf16() -> bool:
    """True if this CPU runs bf16 matrix maths in hardware (x86 AVX512-BF16 or AMX tiles)."""
    import torch

    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # private helpers of torch.cpu; a build without them: take the safe choice
        return False


def resolve_channels_last(setting: bool | str) -> bool:
    """``auto`` → on, on CPU and GPU: NHWC convolutions are faster on both (oneDNN on CPU: +68 % EfficientNet-Lite0
    training images/s at 128 px on 2 cores, docs/PERFORMANCE.md); results differ only by float rounding."""
    return True if setting == "auto" else bool(setting)
