"""Training: config + presets, batched augmentation, class balancing, the Lightning data and training modules,
the ``train`` orchestration and resume.

Heavy modules (torch, lightning) are imported by the submodules; ``from pneumoscope.training import train`` loads
them on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TrainConfig", "load_run_config", "resolve_config", "resume", "train"]


def __getattr__(name: str) -> Any:
    if name in ("TrainConfig", "resolve_config", "load_run_config"):
        from pneumoscope.training import config

        return getattr(config, name)
    if name == "train":
        from pneumoscope.training.run import train

        return train
    if name == "resume":
        from pneumoscope.training.resume import resume

        return resume
    raise AttributeError(name)
