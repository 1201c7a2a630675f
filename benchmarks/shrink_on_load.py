"""What decoding JPEGs at reduced scale ("shrink on load", ``data.imaging.decode_image_bytes``) changes in predictions.

    python benchmarks/shrink_on_load.py [MODEL ...]

For each model (default: the bundled ones) and each full-resolution JPEG of the data folder (the Kermany originals
and the official val images), the prediction from a full decode against the one from the model's own decode
(``Predictor.load``: JPEGs decoded at 1/2 to 1/8 scale while both sides stay at least twice ``decode_side``).
Printed per model: decode time per image (one thread), the median and largest change of any class probability, the
share of files with the same label and the same scope verdict.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from pneumoscope.inference.loading import load_predictor
from pneumoscope.inference.sources import load_input
from pneumoscope.paths import data_root

BUNDLED = ("kermany-binary", "kermany-binary-fast", "kermany-3class")


def full_resolution_jpegs() -> list[Path]:
    data = data_root()
    files = sorted((data / "chest_xray_fullres_sample").rglob("*.jpeg")) + sorted(
        (data / "chest_xray" / "val").rglob("*.jpeg"))
    if not files:
        raise SystemExit(f"no full-resolution JPEGs under {data}: set PNEUMOSCOPE_DATA")
    return files


def timed(load, files: list[Path]) -> tuple[list, float]:
    started = time.perf_counter()
    loaded = [load(path) for path in files]
    return loaded, (time.perf_counter() - started) / len(files) * 1000


def compare(model: str, files: list[Path]) -> dict[str, float]:
    predictor = load_predictor(model)
    full, full_ms = timed(load_input, files)
    shrunk, shrunk_ms = timed(predictor.load, files)
    a, b = predictor.predict_arrays(full), predictor.predict_arrays(shrunk)
    change = [max(abs(x["probabilities"][c] - y["probabilities"][c]) for c in predictor.classes)
              for x, y in zip(a, b, strict=True)]
    return {
        "decode_side": predictor.decode_side, "full_ms": full_ms, "shrunk_ms": shrunk_ms,
        "median_change": statistics.median(change), "max_change": max(change),
        "same_label": float(np.mean([x["label"] == y["label"] for x, y in zip(a, b, strict=True)])),
        "same_scope": float(np.mean([x["in_scope"] == y["in_scope"] for x, y in zip(a, b, strict=True)])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", default=list(BUNDLED))
    args = parser.parse_args()
    files = full_resolution_jpegs()
    print(f"{len(files)} full-resolution JPEGs\n")
    print("| model | decode side | decode ms full / shrunk | probability change median / max | same label | "
          "same scope verdict |\n|---|---|---|---|---|---|")
    for model in args.models:
        r = compare(model, files)
        print(f"| {model} | {r['decode_side']} | {r['full_ms']:.1f} / {r['shrunk_ms']:.1f} | "
              f"{r['median_change']:.4f} / {r['max_change']:.3f} | {100 * r['same_label']:.1f} % | "
              f"{100 * r['same_scope']:.1f} % |")


if __name__ == "__main__":
    main()
