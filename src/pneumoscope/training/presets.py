"""Named training recipes: partial configs applied over the defaults, before a YAML file and the CLI flags.

- ``plain``: the common PyTorch recipe of the literature: rotation / shift / scale + brightness /
  contrast augmentation, class-weighted loss, the epoch chosen on validation loss. It scores well on its own
  validation split and generalises poorly to other acquisition conditions (normals called pneumonia).
- ``standardised``: the plain recipe + per-image intensity standardisation in the model (the default chosen by the
  reduced study, docs/GENERALISATION.md). At full size it ranked third of four eligible recipes: best on resolution
  consistency, last on framing stress and on adult normals.
- ``recommended`` (the default): ``standardised`` + framing jitter (random resized crop 0.85-1.0 with aspect
  0.8-1.25, zoom 0.75-1.15 into a black border, shift +-10 %): the full-size study's choice (224 px, 12 epochs, two
  seeds, chosen by its pre-registered rule on validation and five generalisation proxies; the study's ``framing``).
- ``strong``: photometric (gamma, contrast, brightness, blur, noise, resolution jitter) + geometric (random resized
  crop, rotation +-15 degrees) augmentation + standardisation: what an earlier full-size study found best on the
  official test split. In this project's full-size study it was the most robust to noise, 1.4 points lower on
  validation (failing the rule's gate) and the worst on adult normals.

Research recipes (the papers' own set-ups) are YAML files that name one of these as ``preset:`` and override the rest.
"""

from __future__ import annotations

import copy
import difflib
from typing import Any

from pneumoscope.errors import ConfigError

_PLAIN: dict[str, Any] = {
    "model": {"standardize": False, "dropout": 0.2},
    "augment": {
        "rotation": 10.0,
        "shift": 0.08,
        "scale": [0.9, 1.1],
        "crop_scale": None,
        "photometric_p": 0.8,
        "brightness": 0.15,
        "contrast": 0.15,
        "gamma": None,
        "blur_p": 0.0,
        "noise_p": 0.0,
        "resolution_p": 0.0,
    },
    "balance": {"method": "class_weights"},
    "optim": {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "scheduler": "cosine"},
    "loss": {"label_smoothing": 0.0, "mixup_alpha": 0.0},
}

_STRONG: dict[str, Any] = {
    "model": {"standardize": True, "dropout": 0.2},
    "augment": {
        "rotation": 15.0,
        "shift": 0.0,
        "scale": [1.0, 1.0],
        "crop_scale": [0.7, 1.0],
        "crop_ratio": [0.85, 1.15],
        "photometric_p": 0.8,
        "brightness": 0.3,
        "contrast": 0.3,
        "gamma": [0.7, 1.5],
        "blur_p": 0.3,
        "blur_sigma": [0.1, 1.5],
        "noise_p": 0.3,
        "noise_std": 0.03,
        "resolution_p": 0.3,
        "resolution_scale": [0.35, 1.0],
    },
    "balance": {"method": "class_weights"},
    "optim": {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "scheduler": "cosine"},
    "loss": {"label_smoothing": 0.0, "mixup_alpha": 0.0},
}

_STANDARDISED: dict[str, Any] = copy.deepcopy(_PLAIN) | {"model": {"standardize": True, "dropout": 0.2}}

# The chest at other positions, scales and aspect ratios in the frame: what a held-out acquisition batch's normals
# differ in most. experiments/generalisation/framing.yaml is the same recipe as the study trained it.
_FRAMING_LEVERS: dict[str, Any] = {"crop_scale": [0.85, 1.0], "crop_ratio": [0.8, 1.25], "scale": [0.75, 1.15],
                                   "shift": 0.1, "rotation": 10.0}
_RECOMMENDED: dict[str, Any] = copy.deepcopy(_STANDARDISED)
_RECOMMENDED["augment"] |= _FRAMING_LEVERS

PRESETS: dict[str, dict[str, Any]] = {"plain": _PLAIN, "recommended": _RECOMMENDED, "standardised": _STANDARDISED,
                                      "strong": _STRONG}


def preset_names() -> list[str]:
    """Names of the built-in presets."""
    return sorted(PRESETS)


def preset_values(name: str) -> dict[str, Any]:
    """A copy of the partial config of preset ``name``."""
    try:
        return copy.deepcopy(PRESETS[name])
    except KeyError:
        close = difflib.get_close_matches(name, PRESETS, n=2)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"unknown preset {name!r}.", fix=f"{hint}use one of: {', '.join(preset_names())}.") from None
