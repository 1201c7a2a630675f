"""Inputs that are not chest radiographs, to measure the applicability check on (never to fit it).

- ``GENERATORS``: generated images (photo-like scenes in colour and grey, blanks, gradients, noise, text pages,
  checkerboards, axial-CT-like phantoms);
- ``real_pictures()`` / ``picture_variants()``: real non-radiographs that installed packages ship (photos, an MRI
  slice, maps), as they are, in grey, inverted and cropped;
- ``pydicom_non_radiographs()``: pydicom's test files of other modalities (CT, MR, US, NM, RT dose, ...);
- ``negative_inputs()``: all of them decoded as predict decodes its inputs, by kind.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

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
    """Write the generated non-X-rays (alternating JPEG / PNG) into ``folder``, by kind."""
    rng = np.random.default_rng(seed)
    files: dict[str, list[Path]] = {}
    for name, make in GENERATORS.items():
        files[name] = []
        for i in range(per_category):
            path = folder / f"{name.replace(' ', '_')}_{i}.{'jpg' if i % 2 else 'png'}"
            Image.fromarray(make(rng)).save(path, quality=90)
            files[name].append(path)
    return files


def real_pictures() -> dict[str, np.ndarray]:
    """Real non-radiograph pictures that installed packages ship (uint8 RGB or grey): photos (matplotlib, scikit-learn),
    an MRI slice, an elevation map and a bathymetry map rendered as grey images."""
    import matplotlib
    import sklearn.datasets

    sample = Path(matplotlib.get_data_path()) / "sample_data"
    photos = [sample / "grace_hopper.jpg", sample / "Minduka_Present_Blue_Pack.png", sample / "logo2.png",
              Path(sklearn.datasets.__file__).parent / "images" / "china.jpg",
              Path(sklearn.datasets.__file__).parent / "images" / "flower.jpg"]
    pictures = {}
    for path in photos:
        if path.is_file():
            with Image.open(path) as image:
                pictures[path.stem] = np.asarray(image.convert("RGB"))
    mri = sample / "s1045.ima.gz"
    if mri.is_file():  # 256x256 big-endian uint16 MRI slice
        pixels = np.frombuffer(gzip.decompress(mri.read_bytes()), ">u2").reshape(256, 256).astype(np.float32)
        pictures["mri_s1045"] = (pixels / max(float(pixels.max()), 1.0) * 255).astype(np.uint8)
    for name, key in (("jacksboro_fault_dem", "elevation"), ("topobathy", "topo")):
        path = sample / f"{name}.npz"
        if path.is_file():
            with np.load(path) as data:
                values = data[key].astype(np.float32)
            pictures[name] = ((values - values.min()) / (np.ptp(values) + 1e-9) * 255).astype(np.uint8)
    return pictures


def picture_variants(pictures: dict[str, np.ndarray], crops: int, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Each picture as it is, in grey, inverted grey, and ``crops`` random grey crops (40-80 % of each side)."""
    rng = np.random.default_rng(seed)
    variants: dict[str, list[np.ndarray]] = {"real picture (as is)": [], "real picture (grey)": [],
                                             "real picture (grey, inverted)": [], "real picture (grey crop)": []}
    for picture in pictures.values():
        grey = picture if picture.ndim == 2 else cv2.cvtColor(picture, cv2.COLOR_RGB2GRAY)
        variants["real picture (as is)"].append(picture)
        variants["real picture (grey)"].append(grey)
        variants["real picture (grey, inverted)"].append(255 - grey)
        height, width = grey.shape
        for _ in range(crops):
            side = rng.uniform(0.4, 0.8)
            h, w = max(8, int(height * side)), max(8, int(width * side))
            top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
            variants["real picture (grey crop)"].append(grey[top:top + h, left:left + w])
    return variants


def negative_inputs(folder: Path, per_kind: int, seed: int = 0) -> dict[str, list]:
    """Every non-radiograph kind as decoded inputs (``sources.LoadedImage``), by kind: the generated images and real
    pictures (written to ``folder`` and decoded as predict decodes files), and pydicom's non-radiograph test files
    decoded **without their header**, so that only the image checks judge them (as if their pixels had been saved
    as PNG). A picture that decoding itself refuses (``data.imaging.check_geometry``) gets no prediction and is left
    out."""
    from pneumoscope.errors import ImageLoadError
    from pneumoscope.inference.sources import LoadedImage, load_input

    inputs: dict[str, list] = {kind: [load_input(path) for path in paths]
                               for kind, paths in write_non_xrays(folder, per_kind, seed).items()}
    for kind, images in picture_variants(real_pictures(), crops=6, seed=seed).items():
        inputs[kind] = []
        for i, image in enumerate(images):
            path = folder / f"{kind.replace(' ', '_').replace(',', '')}_{i}.png"
            Image.fromarray(image).save(path)
            try:
                inputs[kind].append(load_input(path))
            except ImageLoadError:  # refused before any check (e.g. the geometry rule): never predicted at all
                continue
    dicoms = []
    for path in pydicom_non_radiographs():
        try:
            loaded = load_input(path)
        except Exception:  # noqa: BLE001, S112 - a test file our decoder cannot read is no input at all
            continue
        dicoms.append(LoadedImage(loaded.gray, loaded.colourfulness, None))
    inputs["pydicom test files (CT, MR, US, NM, ...), pixels only"] = dicoms
    return {kind: images for kind, images in inputs.items() if images}


def pydicom_non_radiographs() -> list[Path]:
    """pydicom's bundled test files with pixel data whose modality is not CR / DX (sorted)."""
    import warnings

    import pydicom
    from pydicom.data import get_testdata_files

    from pneumoscope.data.dicom_header import RADIOGRAPH_MODALITIES

    found = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in sorted(get_testdata_files("*.dcm")):
            try:
                header = pydicom.dcmread(name, stop_before_pixels=False, force=True, defer_size=1024)
            except Exception:  # noqa: BLE001, S112 - a few test files are deliberately broken
                continue
            if "PixelData" in header and str(header.get("Modality", "")).upper() not in RADIOGRAPH_MODALITIES:
                found.append(Path(name))
    return found
