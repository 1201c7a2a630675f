"""Would decoding large JPEGs at reduced scale (Pillow ``draft``: DCT scaling) be a safe speed-up for predict?

    python benchmarks/reduced_decode.py [--models kermany-binary kermany-3class] [--oversample 2 1]

On the 60 full-resolution Kermany originals (``$PNEUMOSCOPE_DATA/chest_xray_fullres_sample``) it prints, per decode
mode (full decode as ``data.imaging.load_image`` does it, and reduced so that both sides stay >= ``oversample`` x
the model's input size): decode + preprocess images/s (one thread), the mean |pixel difference| of the preprocessed
input against the full decode, and per model how often the prediction agrees with the prediction on the image's
224-px copy in ``chest_xray/train`` (the resolution-consistency proxy of docs/GENERALISATION.md) and the mean max |Δp| to it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

from pneumoscope.data.imaging import load_image
from pneumoscope.data.preprocess import preprocess
from pneumoscope.inference.loading import load_predictor
from pneumoscope.inference.predictor import Predictor
from pneumoscope.metrics.classification import predict_classes
from pneumoscope.paths import data_root


def reduced_decode(path: Path, min_side: int) -> np.ndarray:
    """Grey float32 [0, 1] decoded at the largest DCT reduction that keeps both sides >= ``min_side``."""
    with Image.open(path) as image:
        image.draft("L", (min_side, min_side))
        image.load()
        return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def probabilities(predictor: Predictor, images: list[np.ndarray]) -> np.ndarray:
    results = predictor.predict_arrays(images)
    return np.array([[r["probabilities"][c] for c in predictor.classes] for r in results])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["kermany-binary", "kermany-3class"])
    parser.add_argument("--oversample", type=int, nargs="+", default=[2, 1])
    args = parser.parse_args()
    root = data_root()
    originals = sorted((root / "chest_xray_fullres_sample" / "train").glob("*/*.jpeg"))
    copies = [root / "chest_xray" / "train" / p.parent.name / p.name for p in originals]
    print(f"{len(originals)} full-resolution originals, {sum(c.exists() for c in copies)} with a 224-px copy")
    print("| model | decode | decode + preprocess images/s | mean \\|pixel Δ\\| (0-255) | agrees with 224-px copy "
          "| mean \\|Δp\\| to copy |")
    print("|---|---|---|---|---|---|")
    for name in args.models:
        predictor = load_predictor(name, backend="pytorch")
        size = predictor.image_size
        copy_probs = probabilities(predictor, [load_image(c) for c in copies])
        copy_labels = predict_classes(copy_probs, predictor.threshold)
        modes = {"full": load_image} | {f"reduced >= {k}x{size}": (lambda p, side=k * size: reduced_decode(p, side))
                                        for k in args.oversample}
        reference = None
        for mode, load in modes.items():
            started = time.perf_counter()
            grey = [load(p) for p in originals]
            prepared = [preprocess(g, size) for g in grey]
            rate = len(originals) / (time.perf_counter() - started)
            reference = prepared if reference is None else reference
            pixel = np.mean([np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(prepared, reference)])
            probs = probabilities(predictor, grey)
            agree = int((predict_classes(probs, predictor.threshold) == copy_labels).sum())
            delta = np.abs(probs - copy_probs).max(axis=1).mean()
            print(f"| {name} | {mode} | {rate:.0f} | {pixel:.2f} | {agree}/{len(originals)} | {delta:.4f} |")


if __name__ == "__main__":
    main()
