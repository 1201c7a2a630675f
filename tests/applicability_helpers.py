"""A tiny applicability check fitted by the real code on synthetic images, for the tests of everything that uses one
(a module, not conftest, so any test folder can import it)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from PIL import Image
from xray_images import synthetic_xray

from pneumoscope.inference.applicability_fit import FitSettings, train_check
from pneumoscope.models.applicability import ApplicabilityCheck

TINY_SETTINGS = FitSettings(views=1, epochs=12, batch_size=16, learning_rate=3e-3, input_size=32, n_components=4,
                            quantile=0.99)


def write_tiny_populations(root: Path, children: int = 60, adults: int = 40) -> tuple[pd.DataFrame, Path]:
    """Synthetic X-rays as the "children" (a manifest: two images per patient, the last third val) and the same
    X-rays inverted as the "adults" (a folder ``root/adults/Normal``)."""
    rows = []
    for i in range(children):
        path = root / "children" / f"p{i // 2}_{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(synthetic_xray(64, seed=i, pneumonia=i % 2 == 1)).save(path)
        rows.append({"path": str(path), "patient_id": f"kermany:p{i // 2}", "source": "kermany",
                     "fine_label": "bacteria" if i % 2 else "normal",
                     "split": "train" if i < 2 * children // 3 else "val"})
    folder = root / "adults" / "Normal"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(adults):
        Image.fromarray(255 - synthetic_xray(64, seed=500 + i)).save(folder / f"o{i}.png")
    return pd.DataFrame(rows), root / "adults"


def fit_tiny_check(root: Path) -> ApplicabilityCheck:
    """A 32-px check fitted on ``write_tiny_populations`` (no measurement)."""
    manifest, adults = write_tiny_populations(root)
    return train_check([manifest], [adults], TINY_SETTINGS, progress=False, measured=False)
