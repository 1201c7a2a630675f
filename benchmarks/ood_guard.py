"""Measure the OOD guard: false-flag rate on every real X-ray in the data root, flag rate on non-X-rays.

    python benchmarks/ood_guard.py                 # measure with the bounds in pneumoscope.inference.ood
    python benchmarks/ood_guard.py --fit           # (re)fit the bounds + template and print them as Python
    python benchmarks/ood_guard.py --model NAME    # also the model-feature check (needs ood_reference.safetensors)

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
import gzip
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from pneumoscope.inference import ood
from pneumoscope.inference.sources import iter_image_files, load_input
from pneumoscope.paths import data_root

# --------------------------------------------------------------------------------------------- synthetic images


def _pink(rng: np.random.Generator, size: int, alpha: float = 2.0) -> np.ndarray:
    freq = np.fft.fftfreq(size)[:, None] ** 2 + np.fft.fftfreq(size)[None, :] ** 2
    freq[0, 0] = 1.0
    spectrum = (rng.normal(size=(size, size)) + 1j * rng.normal(size=(size, size))) / freq ** (alpha / 4)
    spectrum[0, 0] = 0
    field = np.real(np.fft.ifft2(spectrum))
    return (field - field.min()) / (field.max() - field.min() + 1e-9)


def photo(rng: np.random.Generator, size: int = 320) -> np.ndarray:
    """A natural-image-like colour scene: sky gradient over textured ground, coloured objects."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    horizon = rng.uniform(0.3, 0.7)
    sky = np.stack([0.4 + 0.3 * yy, 0.6 + 0.2 * yy, 0.9 - 0.1 * yy], -1) * rng.uniform(0.7, 1.1)
    ground = rng.uniform(0.1, 0.7, 3)[None, None, :] * (0.6 + 0.6 * _pink(rng, size)[..., None])
    image = np.where((yy < horizon)[..., None], sky, ground)
    for _ in range(int(rng.integers(2, 8))):
        colour = rng.uniform(0, 1, 3)
        cx, cy = rng.uniform(0, 1, 2)
        rx, ry = rng.uniform(0.03, 0.25, 2)
        mask = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1
        image[mask] = colour * (0.7 + 0.5 * _pink(rng, size)[mask][:, None])
    image = np.clip(image + 0.05 * (_pink(rng, size, 1.0)[..., None] - 0.5), 0, 1)
    return (cv2.GaussianBlur(image.astype(np.float32), (0, 0), 0.7) * 255).astype(np.uint8)


def photo_grey(rng: np.random.Generator) -> np.ndarray:
    return cv2.cvtColor(photo(rng), cv2.COLOR_RGB2GRAY)


def blank(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    noise = float(rng.choice([0.0, 0.002, 0.01]))
    image = np.full((size, size), rng.uniform(0, 1)) + rng.normal(0, noise, (size, size))
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def gradient(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    a, b = rng.uniform(-1, 1, 2)
    return (np.clip(0.5 + 0.5 * (a * xx + b * yy - (a + b) / 2), 0, 1) * 255).astype(np.uint8)


def noise(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    kind = int(rng.integers(0, 3))
    if kind == 0:
        image = rng.uniform(0, 1, (size, size))
    elif kind == 1:
        image = np.clip(rng.normal(0.5, 0.2, (size, size)), 0, 1)
    else:
        image = (rng.uniform(0, 1, (size, size)) < 0.5).astype(float)
    if rng.random() < 0.3:
        image = rng.uniform(0, 1, (size, size, 3))
    return (image * 255).astype(np.uint8)


def text(rng: np.random.Generator, size: int = 320) -> np.ndarray:
    background = 255 if rng.random() < 0.7 else 0
    image = np.full((size, size), background, np.uint8)
    words = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "patient", "report", "findings", "chest", "film"]
    y = 20
    while y < size - 5:
        line = " ".join(rng.choice(words, 4))
        cv2.putText(image, line, (5, y), cv2.FONT_HERSHEY_SIMPLEX, rng.uniform(0.35, 0.6), 255 - background, 1,
                    cv2.LINE_AA)
        y += int(rng.integers(14, 24))
    return image


def checkerboard(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    n = int(rng.choice([2, 4, 8, 16, 32]))
    yy, xx = np.mgrid[0:size, 0:size] * n // size
    low, high = sorted(rng.uniform(0, 1, 2))
    return ((low + (high - low) * ((yy + xx) % 2)) * 255).astype(np.uint8)


def ct_slice(rng: np.random.Generator, size: int = 320) -> np.ndarray:
    """An axial-CT-like phantom: body ellipse on black, dark lungs, bright spine, soft-tissue noise."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    image = np.zeros((size, size), np.float32)
    ax, ay = rng.uniform(0.38, 0.46), rng.uniform(0.28, 0.36)
    body = ((xx - 0.5) / ax) ** 2 + ((yy - 0.5) / ay) ** 2 < 1
    image[body] = rng.uniform(0.35, 0.5)
    for cx in (0.33, 0.67):
        image[((xx - cx) / 0.13) ** 2 + ((yy - 0.48) / 0.2) ** 2 < 1] = rng.uniform(0.02, 0.12)
    image[((xx - 0.5) / 0.05) ** 2 + ((yy - 0.72) / 0.05) ** 2 < 1] = 0.95
    image[((xx - 0.55) / 0.1) ** 2 + ((yy - 0.5) / 0.1) ** 2 < 1] = 0.5
    image += rng.normal(0, 0.03, (size, size)) * body
    return (np.clip(cv2.GaussianBlur(image, (0, 0), 1.0), 0, 1) * 255).astype(np.uint8)


GENERATORS: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "colour photo-like": photo,
    "grey photo-like": photo_grey,
    "blank": blank,
    "gradient": gradient,
    "noise": noise,
    "text": text,
    "checkerboard": checkerboard,
    "CT-slice-like": ct_slice,
}


def write_non_xrays(folder: Path, per_category: int, seed: int = 0) -> dict[str, list[Path]]:
    """Write the generated non-X-rays (alternating JPEG / PNG) and matplotlib's sample images into ``folder``."""
    rng = np.random.default_rng(seed)
    files: dict[str, list[Path]] = {}
    for name, make in GENERATORS.items():
        files[name] = []
        for i in range(per_category):
            path = folder / f"{name.replace(' ', '_')}_{i}.{'jpg' if i % 2 else 'png'}"
            Image.fromarray(make(rng)).save(path, quality=90)
            files[name].append(path)
    files["matplotlib sample photos/MRI"] = _matplotlib_samples(folder)
    return files


def _matplotlib_samples(folder: Path) -> list[Path]:
    import matplotlib

    sample = Path(matplotlib.get_data_path()) / "sample_data"
    paths = [p for p in (sample / "grace_hopper.jpg", sample / "Minduka_Present_Blue_Pack.png") if p.is_file()]
    mri = sample / "s1045.ima.gz"
    if mri.is_file():  # 256x256 big-endian uint16 MRI slice
        pixels = np.frombuffer(gzip.decompress(mri.read_bytes()), ">u2").reshape(256, 256).astype(np.float32)
        out = folder / "mri_s1045.png"
        Image.fromarray((pixels / pixels.max() * 255).astype(np.uint8)).save(out)
        paths.append(out)
    return paths


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
    """Print new IMAGE_BOUNDS and template for pneumoscope/inference/ood.py."""
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


def flag_rate(predict: Callable[[Path], ood.OODResult], paths: list[Path]) -> tuple[float, int, list[str]]:
    results = [predict(p) for p in paths]
    flagged = [str(p) for p, r in zip(paths, results, strict=True) if r.ood]
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
        if predictor.feature_reference is None:
            sys.exit(f"{args.model} has no OOD feature reference ({ood.FEATURE_REFERENCE_FILE})")

    def verdict(path: Path) -> ood.OODResult:
        loaded = load_input(path)
        if predictor is not None:
            result = predictor.predict_arrays([loaded])[0]
            return ood.OODResult(result["ood"], result["ood_score"], tuple(result["ood_reasons"]))
        return ood.combine(ood.image_score(ood.image_stats(loaded.gray, loaded.colourfulness)), None)

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
