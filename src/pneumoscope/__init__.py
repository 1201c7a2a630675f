"""Pneumoscope: pneumonia detection and classification on chest X-rays.

The public Python API (``pneumoscope.api``) is re-exported here::

    import pneumoscope as ps
    model = ps.load_model("kermany-binary")
    model.predict("chest.jpeg")

Names are resolved on first use, and heavy libraries (torch, lightning, pandas) are imported lazily by the modules
that need them, so that ``import pneumoscope`` and ``pneumoscope --help`` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pneumoscope.version import __version__

__all__ = [
    "Comparison",
    "Evaluation",
    "Explanation",
    "Model",
    "PneumoscopeError",
    "TrainConfig",
    "__version__",
    "bundled_models",
    "compare",
    "ensemble",
    "evaluate",
    "export_onnx",
    "load_model",
    "make_config",
    "read_dataset",
    "resume",
    "split_dataset",
    "summarize_dataset",
    "train",
]

if TYPE_CHECKING:
    from pneumoscope.api import (
        Comparison,
        Evaluation,
        Explanation,
        Model,
        PneumoscopeError,
        TrainConfig,
        bundled_models,
        compare,
        ensemble,
        evaluate,
        export_onnx,
        load_model,
        make_config,
        read_dataset,
        resume,
        split_dataset,
        summarize_dataset,
        train,
    )


def __getattr__(name: str) -> Any:
    if name in __all__:
        from pneumoscope import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
