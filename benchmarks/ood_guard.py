"""Measure the OOD guard: false-flag rate on every real X-ray in the data root, flag rate on non-X-rays.

    python benchmarks/ood_guard.py                 # measure with the bounds in pneumoscope.data.image_stats
    python benchmarks/ood_guard.py --fit           # (re)fit the bounds + template and print them as Python
    python benchmarks/ood_guard.py --model NAME    # the model's whole scope verdict (learned check included)

Fitting (``--fit``) uses every second Kermany train image and every second COVID-19 Radiography DB image; the other
halves, the Kermany val images and the full-resolution sample are held out. For each statistic the limit is its
0.1 % (or 99.9 %) quantile on the fitting half moved outwards by a margin of a quarter of the 5-95 % spread. Colourfulness
has a fixed limit (10): every real X-ray here has exactly 0.

Non-X-rays are generated (written as PNG/JPEG files and read back through the same loader as ``predict``):
colour photo-like scenes, the same in grey, blank images, smooth gradients, noise, text pages, checkerboards,
CT-slice-like phantoms; plus the real photos and MRI slice that matplotlib ships as sample data.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pneumoscope.data import image_stats as ood
from pneumoscope.inference.negatives import write_non_xrays
from pneumoscope.inference.sources import iter_image_files, load_input
from pneumoscope.paths import data_root

# --------------------------------------------------------------------------------------------- real X-rays


def real_sets(root: Path) -> dict[str, list[Path]]:
    return {
        "Kermany train": list(iter_image_files([root / "chest_xray" / "train"])),
        "Kermany val": list(iter_image_files([root / "chest_xray" / "val"])),
        "Kermany full-res sample": list(iter_image_files([root / "chest_xray_fullres_sample"])),
        "COVID-19 Radiography DB": list(iter_image_files([root / "covid19_radiography"])),
    }


def stats_of(paths: list[Path]) -> list[ood.ImageStats]:
    out = []
    for path in paths:
        loaded = load_input(path)
        out.append(ood.image_stats(loaded.gray, loaded.colourfulness))
    return out


def fit(stats: list[ood.ImageStats], thumbs: np.ndarray) -> None:
    """Print new IMAGE_BOUNDS and template for pneumoscope/data/image_stats.py."""
    template = ood._zscore(thumbs.mean(axis=0))
    print("CXR_TEMPLATE_8x8: tuple[float, ...] = (")
    for row in template.reshape(8, 8):
        print("    " + " ".join(f"{v:.3f}," for v in row))
    print(")")
    table = {name: np.array([getattr(s, name) for s in stats]) for name in ood.ImageStats.__dataclass_fields__}
    # Recompute the template correlation with the new template.
    table["template_corr"] = thumbs @ template
    print("IMAGE_BOUNDS: tuple[Bound, ...] = (")
    for bound in ood.IMAGE_BOUNDS:
        values = table[bound.stat]
        typical = float(np.median(values))
        spread = float(np.subtract(*np.percentile(values, [95, 5])))
        if bound.stat == "colourfulness":
            limit = bound.limit
        elif bound.side == "low":
            limit = float(np.quantile(values, 0.001)) - 0.25 * spread
        else:
            limit = float(np.quantile(values, 0.999)) + 0.25 * spread
        print(f'    Bound("{bound.stat}", "{bound.side}", {typical:.4g}, {limit:.4g}, "{bound.reason}"),')
    print(")")


def flag_rate(predict: Callable[[Path], bool], paths: list[Path]) -> tuple[float, int, list[str]]:
    results = [predict(p) for p in paths]
    flagged = [str(p) for p, r in zip(paths, results, strict=True) if r]
    return len(flagged) / max(len(paths), 1), len(flagged), flagged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="data root (default: pneumoscope.paths.data_root())")
    parser.add_argument("--fit", action="store_true", help="fit bounds and template, print them")
    parser.add_argument("--per-category", type=int, default=100, help="generated images per non-X-ray category")
    parser.add_argument("--model", default=None, help="also apply this model's feature check")
    args = parser.parse_args()
    root = args.data or data_root()
    sets = real_sets(root)

    if args.fit:
        fit_paths = sets["Kermany train"][::2] + sets["COVID-19 Radiography DB"][::2]
        loaded = [load_input(p) for p in fit_paths]
        stats = [ood.image_stats(x.gray, x.colourfulness) for x in loaded]
        thumbs = np.stack([ood.thumbnail(x.gray) for x in loaded])
        fit(stats, thumbs)
        return

    predictor = None
    if args.model:
        from pneumoscope.inference.loading import load_predictor

        predictor = load_predictor(args.model)

    def verdict(path: Path) -> bool:
        """True when ``path`` is flagged (out of scope)."""
        loaded = load_input(path)
        if predictor is not None:
            result = predictor.predict_arrays([loaded])[0]
            return not result["in_scope"]
        return ood.image_score(ood.image_stats(loaded.gray, loaded.colourfulness))[0] >= 1.0

    started = time.perf_counter()
    print(f"{'set':34s} {'images':>7s} {'flagged':>8s} {'rate':>8s}")
    total = total_flagged = 0
    for name, paths in sets.items():
        rate, count, flagged = flag_rate(verdict, paths)
        total, total_flagged = total + len(paths), total_flagged + count
        print(f"{'X-ray: ' + name:34s} {len(paths):7d} {count:8d} {rate:8.2%}")
        for path in flagged[:5]:
            print(f"    flagged: {path}")
    print(f"{'X-ray: all real':34s} {total:7d} {total_flagged:8d} {total_flagged / total:8.2%}")
    with tempfile.TemporaryDirectory() as folder:
        for name, paths in write_non_xrays(Path(folder), args.per_category).items():
            rate, count, _ = flag_rate(verdict, paths)
            print(f"{'non-X-ray: ' + name:34s} {len(paths):7d} {count:8d} {rate:8.2%}")
    print(f"({time.perf_counter() - started:.0f} s; data root {root})")


if __name__ == "__main__":
    main()
