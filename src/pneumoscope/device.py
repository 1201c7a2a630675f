"""Accelerator, precision, memory format and malloc's reuse of freed memory: what a run or a scorer uses on this
machine (``auto`` resolved here, once, for training, evaluation and prediction alike)."""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import threading

from pneumoscope.errors import ConfigError

# glibc's malloc returns blocks above M_MMAP_THRESHOLD to the system when they are freed, and trims free memory above
# M_TRIM_THRESHOLD at the heap's top (mallopt parameter numbers from malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
# the largest block kept for reuse in training and scoring: one activation of EfficientNet-Lite0 at 224 px is
# 154 MB at batch 32 and 308 MB at batch 64
TRAINING_BLOCK_BYTES = 1024 * 1024 * 1024
KEEP_FREED_MEMORY_ENV = "PNEUMOSCOPE_KEEP_FREED_MEMORY"
_kept_block_bytes = 0
_keep_lock = threading.Lock()
log = logging.getLogger(__name__)


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


def skip_uninitialized_memory_fill() -> None:
    """Keep deterministic kernels but drop torch's NaN fill of every new tensor (process-wide).

    With deterministic algorithms on (``trainer.deterministic``, ``warn`` by default) torch also fills each new
    tensor's memory with NaN, so that a kernel reading memory it never wrote fails the same way every time. Correct
    kernels never read it, so results are unchanged; the fill cost 16-19 % of an EfficientNet-Lite0 training step at
    224 px on a CPU (docs/PERFORMANCE.md).
    """
    import torch

    torch.utils.deterministic.fill_uninitialized_memory = False


def keep_freed_memory(block_bytes: int) -> bool:
    """Let glibc's malloc keep freed blocks of up to ``block_bytes`` for reuse, and up to twice that free at the top
    of its heap (process-wide; a later call only ever raises them). True where they are set.

    By default glibc serves blocks above 32 MB with fresh pages from the system and gives them back when they are
    freed, so every batch pays for its pages again. Predicting through onnxruntime without its arena that cost 900,000
    page faults and 2.3 s of system time for 624 images on 2 cores; a training step of EfficientNet-Lite0 at 224 px,
    batch 32, spent as much system time as computing (docs/PERFORMANCE.md). Kept in malloc's heap, the same memory
    serves every batch; peak memory stays that of the largest batch. ``PNEUMOSCOPE_KEEP_FREED_MEMORY=0`` leaves
    malloc as it is; nothing is changed where the C library is not glibc.
    """
    global _kept_block_bytes
    if os.environ.get(KEEP_FREED_MEMORY_ENV, "1").strip() == "0" or not sys.platform.startswith("linux"):
        return False
    with _keep_lock:
        if block_bytes <= _kept_block_bytes:
            return True
        try:
            mallopt = ctypes.CDLL("libc.so.6").mallopt
        except (OSError, AttributeError):
            return False
        kept = bool(mallopt(_M_MMAP_THRESHOLD, int(block_bytes))) and bool(mallopt(_M_TRIM_THRESHOLD,
                                                                                 2 * int(block_bytes)))
        if kept:
            _kept_block_bytes = block_bytes
        else:
            log.debug("mallopt refused the thresholds; freed memory goes back to the system as before.")
        return kept
