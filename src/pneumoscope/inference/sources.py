"""Expanding ``pneumoscope predict INPUT...`` into image files, lazily.

Arguments may be image files, folders (walked recursively, in sorted order) or DICOM files, including the
extension-less or numerically-suffixed files that DICOM exports are full of (recognised by the ``DICM`` marker).
Files named explicitly are always used (an undecodable one becomes an error row); inside folders only files that look
like images are picked, so that a README or a CSV beside the images is not reported as a corrupt image.
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pneumoscope.data.dicom_header import DicomHeader
from pneumoscope.data.imaging import IMAGE_SUFFIXES  # the formats the data layer decodes
from pneumoscope.errors import DataError

# Suffixes that DICOM files are often saved with (besides none at all); decided by content.
_MAYBE_DICOM_SUFFIXES = frozenset({"", ".ima", ".img", ".raw", ".bin"})
_SKIPPED_NAMES = frozenset({"DICOMDIR"})
_GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_COLOUR_SIDE = 128


def is_dicom_file(path: Path) -> bool:
    """Whether ``path`` starts like a DICOM Part 10 file (128-byte preamble then ``DICM``)."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(132)
    except OSError:
        return False
    return len(header) == 132 and header[128:132] == b"DICM"


def looks_like_image(path: Path) -> bool:
    """Whether a file found inside a folder should be predicted on."""
    if path.name.startswith(".") or path.name.upper() in _SKIPPED_NAMES:
        return False
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return True
    if suffix in _MAYBE_DICOM_SUFFIXES or suffix[1:].isdigit():
        return is_dicom_file(path)
    return False


def _walk(folder: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(root) / name
            if looks_like_image(path):
                yield path


def check_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """The inputs as paths; DataError naming the first one that does not exist."""
    paths = [Path(p).expanduser() for p in inputs]
    if not paths:
        raise DataError("no input given.", fix="pass image files, DICOM files or folders.")
    for path in paths:
        if not path.exists():
            raise DataError("input not found.", path=path, fix="check the path (files and folders are accepted).")
    return paths


def iter_image_files(inputs: Iterable[str | Path]) -> Iterator[Path]:
    """Yield the image files named by ``inputs`` (files as given, folders walked recursively), lazily."""
    for path in check_inputs(inputs):
        if path.is_dir():
            yield from _walk(path)
        else:
            yield path


def count_image_files(inputs: Iterable[str | Path]) -> int:
    """How many files ``iter_image_files`` yields (a cheap walk without decoding; for the progress bar)."""
    return sum(1 for _ in iter_image_files(inputs))


@dataclass(frozen=True)
class LoadedImage:
    """A decoded input: its grey pixels as decoded (uint8 for 8-bit files, else float32 in [0, 1]; see
    ``pneumoscope.data.imaging``), the colourfulness of its original (0 for grey files), for DICOM files what
    the header says about the acquisition (read before the pixels) and, when it was decoded at reduced scale, the
    (width, height) stored in the file."""

    pixels: np.ndarray
    colourfulness: float = 0.0
    header: DicomHeader | None = None
    file_size: tuple[int, int] | None = None

    @property
    def source_size(self) -> tuple[int, int]:
        """(width, height) of the image as stored in its file."""
        return self.file_size or (int(self.pixels.shape[1]), int(self.pixels.shape[0]))

    @functools.cached_property
    def gray(self) -> np.ndarray:
        """The grey image as float32 (H, W) in [0, 1] (made on first use: prediction works on ``pixels``)."""
        from pneumoscope.data.imaging import unit_float

        return unit_float(self.pixels)


def _pil_colourfulness(data: bytes) -> float:
    """Colourfulness of a colour raster, decoded at reduced size; 0 for grey files or anything PIL cannot read."""
    from pneumoscope.data.image_stats import colourfulness

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.mode in _GREY_MODES:
                return 0.0
            image.draft("RGB", (_COLOUR_SIDE, _COLOUR_SIDE))  # JPEG: decode at 1/2..1/8 scale
            image.thumbnail((_COLOUR_SIDE, _COLOUR_SIDE))
            return colourfulness(np.asarray(image.convert("RGB")))
    except Exception:  # noqa: BLE001 - the data layer has already decoded the file; colour is best effort
        return 0.0


def _dicom_colourfulness(data: bytes) -> float:
    """Colourfulness of a colour DICOM (e.g. a secondary capture of a photo); 0 for monochrome ones."""
    from pneumoscope.data.image_stats import colourfulness

    try:
        import pydicom

        header = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
        photometric = str(header.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
        if photometric.startswith("MONOCHROME"):
            return 0.0
        dataset = pydicom.dcmread(io.BytesIO(data), force=True)
        pixels = dataset.pixel_array
        if int(dataset.get("NumberOfFrames", 1) or 1) > 1:
            pixels = pixels[0]
        if photometric == "PALETTE COLOR":
            pixels = pydicom.pixels.apply_color_lut(pixels, dataset)
        elif photometric.startswith("YBR"):
            pixels = pydicom.pixels.convert_color_space(pixels, photometric, "RGB")
        if pixels.ndim != 3 or pixels.shape[-1] != 3:
            return 0.0
        return colourfulness(pixels.astype(np.float32) / max(float(pixels.max()), 1.0))
    except Exception:  # noqa: BLE001 - best effort, as above
        return 0.0


def load_input(path: str | Path, shrink_to: int | None = None) -> LoadedImage:
    """Decode one input file with the data layer (ImageLoadError if it cannot be used) and measure its colour;
    ``shrink_to``: see ``load_input_bytes``."""
    from pneumoscope.data.imaging import read_file_bytes

    path = Path(path)
    return load_input_bytes(read_file_bytes(path), str(path), shrink_to)


def load_input_bytes(data: bytes, name: str = "upload", shrink_to: int | None = None) -> LoadedImage:
    """Decode an uploaded file (ImageLoadError naming ``name`` if it cannot be used, ``check_geometry`` included)
    and measure its colour; a DICOM file's header is read and checked first (``data.dicom_header``).

    ``shrink_to``: the largest side the image will be reduced to (``Predictor.decode_side``); JPEGs are then decoded
    at reduced scale (``data.imaging.decode_image_bytes``).
    """
    from pneumoscope.data.dicom_header import read_header
    from pneumoscope.data.imaging import check_geometry, decode_image_bytes, is_dicom_bytes

    dicom = is_dicom_bytes(data) or _is_dicom_name(name)
    header = read_header(data) if dicom else None
    decoded = decode_image_bytes(data, name, shrink_to)
    check_geometry(*decoded.source_size, name)
    colour = _dicom_colourfulness(data) if dicom else _pil_colourfulness(data)
    return LoadedImage(decoded.gray, colour, header, decoded.file_size)


def _is_dicom_name(name: str) -> bool:
    return Path(name).suffix.lower() in {".dcm", ".dicom", ".dic"}
