"""Writing ONNX files: a PyTorch module exported with a dynamic batch axis, metadata, ``onnx.checker``, written
atomically; and exports kept in pneumoscope's cache, made on first use (``cached_export``)."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pneumoscope.errors import ModelError, PneumoscopeError
from pneumoscope.files import atomic_path

DEFAULT_OPSET = 17
ONNX_CACHE_DIR = "onnx"

log = logging.getLogger(__name__)


def write_onnx(module: Any, dummy: Any, out: Path, input_name: str, output_names: Sequence[str],
               metadata: Mapping[str, str], doc: str = "", opset: int = DEFAULT_OPSET) -> Path:
    """Export ``module`` (eval mode) on ``dummy`` to ``out``: batch axis dynamic, ``metadata`` in ``metadata_props``,
    checked by ``onnx.checker``; written atomically (``out`` is complete or absent)."""
    import onnx
    import torch

    with atomic_path(out, suffix=".onnx") as tmp:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
            torch.onnx.export(
                module, (dummy,), str(tmp), dynamo=False, input_names=[input_name], output_names=list(output_names),
                dynamic_axes={name: {0: "batch"} for name in (input_name, *output_names)}, opset_version=opset,
                do_constant_folding=True,
            )
        proto = onnx.load(str(tmp))
        del proto.metadata_props[:]
        for key, value in metadata.items():
            proto.metadata_props.add(key=key, value=value)
        proto.doc_string = doc
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, str(tmp))
    return out


def cache_path(stem: str) -> Path:
    """Where the cache keeps the ONNX export called ``stem``."""
    from pneumoscope.paths import cache_root

    return cache_root() / ONNX_CACHE_DIR / f"{stem.replace(os.sep, '_')}.onnx"


def cached_export(path: Path, export: Callable[[Path], Any], required: bool = False) -> Path | None:
    """``path`` in the cache, written by ``export(tmp_path)`` on first use.

    Where the export or the cache fails: ModelError if ``required``, else a logged warning and None (the caller
    falls back to PyTorch). Concurrent first uses each export to a private temporary file; the last rename wins.
    """
    if path.is_file():
        return path
    try:
        with atomic_path(path, suffix=".onnx") as tmp:
            export(tmp)
    except (PneumoscopeError, OSError) as error:
        if required:
            raise ModelError(f"cannot export to ONNX in the cache ({error}).", path=path.parent,
                             fix="set PNEUMOSCOPE_CACHE to a writable folder, or use --backend pytorch.") from None
        log.warning("ONNX export into the cache failed (%s); running with PyTorch.", error)
        return None
    return path
