"""Decode one chest X-ray file (JPEG, PNG, BMP, TIFF, DICOM...) into a normalised grayscale array.

Every decoder returns a grey ``(H, W)`` array where 0 is black (air) and the maximum white (bone): uint8 for 8-bit
sources (most JPEG / PNG files: no conversion of the full-resolution pixels), float32 in [0, 1] for deeper ones (16-bit
PNG, DICOM). MONOCHROME1 DICOMs are inverted, EXIF orientation is applied, alpha is composited onto black.
``load_image`` always gives float32 in [0, 1]. Anything that cannot be used raises ``ImageLoadError`` naming the file
and the fix. Conversion to 3 channels happens in the model, not here. A caller that will shrink the image anyway
(``shrink_to``: the cache, prediction) gets large JPEGs decoded at reduced scale.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pneumoscope.errors import ImageLoadError

# Decompression-bomb guard: refuse images with more pixels than this before decoding them. The largest
# radiographs (e.g. 43x43 cm detectors at 0.1 mm) hold ~20 million pixels; 60 million leaves room to spare.
MAX_PIXELS = 60_000_000

# The one rule on image geometry of every entry point (the manifest scan behind `data inspect` / `data split` /
# training, predict, explain, serve): below 16 px a side no chest is left to see (MedMNIST's 28 px radiographs pass),
# and radiographs are at most about 2:1, so a longer strip is a crop, a banner or a scanning artefact.
MIN_SIDE = 16
MAX_ASPECT_RATIO = 4.0

DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".dic"})
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".pgm",
                            ".ppm", ".jp2", ".j2k"}) | DICOM_SUFFIXES

_EXIF_ORIENTATION = 0x0112
_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})  # EXIF orientations that turn the image by 90 degrees

# Shrink on load keeps at least this many decoded pixels per pixel of the caller's target side, so that the final
# area-averaged resize still does part of the reduction (median change of a probability 0.0001-0.004 against a full
# decode on full-resolution radiographs; measured in docs/PERFORMANCE.md).
SHRINK_MARGIN = 2
_CORRUPT_FIX = "re-download or re-export the file, or remove it from the data set."


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image: ``gray`` (H, W), uint8 or float32 in [0, 1] (see the module docstring), the container
    format it was read from and, where it was decoded at reduced scale (``shrink_to``), the (width, height) of the
    image in the file."""

    gray: np.ndarray
    format: str
    file_size: tuple[int, int] | None = None

    @property
    def height(self) -> int:
        return int(self.gray.shape[0])

    @property
    def width(self) -> int:
        return int(self.gray.shape[1])

    @property
    def source_size(self) -> tuple[int, int]:
        """(width, height) of the image as stored (what the geometry rule judges)."""
        return self.file_size or (self.width, self.height)


def load_image(path: str | Path) -> np.ndarray:
    """Decode the image file at ``path`` into float32 (H, W) in [0, 1] (0 = black); ImageLoadError if unusable."""
    return unit_float(decode_image_bytes(read_file_bytes(path), str(path)).gray)


def load_image_bytes(data: bytes, name: str = "upload") -> np.ndarray:
    """Decode an in-memory image file (e.g. an upload) into float32 (H, W) in [0, 1]; ``name`` is used in error
    messages and for the extension."""
    return unit_float(decode_image_bytes(data, name).gray)


def unit_float(gray: np.ndarray) -> np.ndarray:
    """A decoded grey array as float32 in [0, 1] (uint8 scaled by 1/255, float32 as it is)."""
    return gray.astype(np.float32) / 255.0 if gray.dtype == np.uint8 else gray


def read_file_bytes(path: str | Path) -> bytes:
    """The bytes of ``path``; ImageLoadError for a missing file, a folder or a file that cannot be read."""
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ImageLoadError("file not found.", path=path, fix="check the path.") from None
    except IsADirectoryError:
        raise ImageLoadError("is a folder, not an image file.", path=path, fix="pass an image file.") from None
    except OSError as error:
        raise ImageLoadError(f"cannot read the file ({_one_line(error)}).", path=path,
                             fix="check its permissions and the disk.") from None


def decode_image_bytes(data: bytes, name: str, shrink_to: int | None = None) -> DecodedImage:
    """Decode ``data`` (the bytes of the file called ``name``) with Pillow or pydicom; ImageLoadError if unusable.

    ``shrink_to``: the side the caller reduces the image to (a model's input). A JPEG is then decoded at 1/2, 1/4 or
    1/8 scale where both sides stay at least ``SHRINK_MARGIN`` times that (libjpeg's DCT scaling, "shrink on load":
    an antialiased reduction made by the decoder, which skips most of the work of decoding every pixel).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # decoders warn about every oddity of a damaged file; we raise instead
            return _usable(_decode(data, name, shrink_to), name)
    except ImageLoadError:
        raise
    except MemoryError:
        raise ImageLoadError("not enough memory to decode the image.", path=name,
                             fix="downscale it, or free memory.") from None
    except Exception as error:  # noqa: BLE001 - malformed files make decoders fail in arbitrary ways
        raise ImageLoadError(f"corrupt image ({type(error).__name__}: {_one_line(error)}).", path=name,
                             fix=_CORRUPT_FIX) from None


def _decode(data: bytes, name: str, shrink_to: int | None) -> DecodedImage:
    if len(data) == 0:
        raise ImageLoadError("empty file (0 bytes).", path=name, fix=_CORRUPT_FIX)
    suffix = Path(name).suffix.lower()
    if is_dicom_bytes(data):
        return DecodedImage(_decode_dicom(data, name, has_preamble=True), "dicom")
    try:
        return _decode_with_pillow(data, name, shrink_to)
    except _NotRecognised:
        if suffix in DICOM_SUFFIXES or suffix == "":
            return DecodedImage(_decode_dicom(data, name, has_preamble=False), "dicom")
        raise ImageLoadError(f"not an image: its content is no known image format (extension {suffix or 'none'}).",
                             path=name, fix="remove it, or convert it to PNG, JPEG or DICOM.") from None


def _usable(decoded: DecodedImage, name: str) -> DecodedImage:
    """``decoded`` if it is what every decoder promises (2-D, uint8 or float32 in [0, 1]); a damaged header can make
    the pixel data decode to frames or columns it does not hold, or a window / rescale to NaN."""
    gray = decoded.gray
    if gray.ndim != 2 or gray.size == 0:
        raise ImageLoadError(f"the pixel data decodes to an array of shape {gray.shape}, not an image (its header "
                             "does not match the pixels).", path=name, fix=_CORRUPT_FIX)
    if gray.dtype == np.uint8:
        return decoded
    low, high = float(gray.min()), float(gray.max())
    if not (0.0 <= low and high <= 1.0):  # NaN compares false
        raise ImageLoadError("the image decodes to invalid values (NaN, infinite or out of range; e.g. a broken "
                             "rescale or window in its header).", path=name, fix=_CORRUPT_FIX)
    return decoded if gray.dtype == np.float32 else DecodedImage(gray.astype(np.float32), decoded.format,
                                                                 decoded.file_size)


def is_dicom_bytes(data: bytes) -> bool:
    """True if ``data`` starts with the DICOM Part 10 preamble (128 bytes, then ``DICM``)."""
    return len(data) >= 132 and data[128:132] == b"DICM"


class _NotRecognised(Exception):
    """Pillow does not recognise the format (the caller may still try DICOM)."""


# ------------------------------------------------------------------------------------------------ Pillow


def _decode_with_pillow(data: bytes, name: str, shrink_to: int | None = None) -> DecodedImage:
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise _NotRecognised from None
    except Image.DecompressionBombError:
        raise _too_large(name, "over Pillow's own decompression-bomb limit") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageLoadError(f"corrupt image header ({_one_line(error)}).", path=name, fix=_CORRUPT_FIX) from None
    with image:
        width, height = image.size
        check_pixel_count(width, height, name)
        fmt = (image.format or "unknown").lower()
        if fmt == "jpeg" and image.mode in ("L", "RGB", "YCbCr") and (shrink_to or image.mode != "L"):
            # the luma plane only (same values, less work), at reduced scale if the caller shrinks the image anyway
            side = SHRINK_MARGIN * shrink_to if shrink_to else 0
            image.draft("L", (side, side) if side else image.size)
        try:
            image.load()
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
            raise ImageLoadError(f"truncated or corrupt image ({_one_line(error)}).", path=name,
                                 fix=_CORRUPT_FIX) from None
        file_size = (width, height) if image.size != (width, height) else None
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
        if orientation != 1:
            image = ImageOps.exif_transpose(image)
            if file_size and orientation in _SWAPPING_ORIENTATIONS:
                file_size = (height, width)
        gray = _pillow_to_gray(image, name)
    return DecodedImage(gray, fmt, file_size)


def _pillow_to_gray(image: Image.Image, name: str) -> np.ndarray:
    mode = image.mode
    if mode == "L":
        return np.asarray(image)
    if mode.startswith("I;16") or mode == "I":
        return _scale_by_bit_depth(np.asarray(image))
    if mode == "F":
        return _min_max(np.asarray(image, dtype=np.float32), name)
    if mode in ("LA", "La", "RGBA", "RGBa", "PA") or (mode == "P" and "transparency" in image.info):
        gray_alpha = np.asarray(image.convert("RGBA").convert("LA"), dtype=np.float32) / 255.0
        return np.ascontiguousarray(gray_alpha[..., 0] * gray_alpha[..., 1])  # alpha onto black
    return np.asarray(image.convert("L"))


def _scale_by_bit_depth(pixels: np.ndarray) -> np.ndarray:
    """Integer pixels scaled by the smallest of 8/10/12/14/16 bits that holds their maximum (no contrast stretch)."""
    pixels = pixels.astype(np.float32)
    peak = float(pixels.max()) if pixels.size else 0.0
    bits = min(16, max(8, 2 * math.ceil(math.log2(peak + 1) / 2))) if peak > 0 else 8
    return np.clip(pixels / float(2**bits - 1), 0.0, 1.0)


# ------------------------------------------------------------------------------------------------ DICOM


def _decode_dicom(data: bytes, name: str, has_preamble: bool) -> np.ndarray:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        dataset = pydicom.dcmread(io.BytesIO(data), force=True)
    except (InvalidDicomError, OSError, ValueError, KeyError, TypeError, EOFError) as error:
        raise ImageLoadError(f"not a readable DICOM file ({_one_line(error)}).", path=name,
                             fix=_CORRUPT_FIX) from None
    if not any(tag in dataset for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        if not has_preamble and "SOPClassUID" not in dataset:
            raise ImageLoadError("not an image: neither an image format nor DICOM.", path=name,
                                 fix="remove it, or convert it to PNG, JPEG or DICOM.")
        raise ImageLoadError("DICOM file has no pixel data (e.g. a report or presentation state, not an image).",
                             path=name, fix="use the DICOM image file of the study instead.")
    rows, columns = int(dataset.get("Rows", 0) or 0), int(dataset.get("Columns", 0) or 0)
    check_pixel_count(columns, rows, name)
    pixels = _dicom_pixels(dataset, name)
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if not photometric.startswith("MONOCHROME"):
        return _dicom_colour_to_gray(pixels, dataset, photometric)
    gray = _dicom_monochrome_to_unit(pixels, dataset, name)
    return np.ascontiguousarray(1.0 - gray if photometric == "MONOCHROME1" else gray, dtype=np.float32)


def _dicom_pixels(dataset, name: str) -> np.ndarray:
    try:
        pixels = dataset.pixel_array
    except Exception as error:  # noqa: BLE001 - pydicom raises many types for missing codecs / bad data
        syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
        syntax_name = getattr(syntax, "name", None) or "unknown transfer syntax"
        fix = _CORRUPT_FIX
        if getattr(syntax, "is_compressed", False):
            fix = ("install a decoder (pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg) or export the "
                   "image uncompressed; if it still fails, " + _CORRUPT_FIX)
        raise ImageLoadError(f"cannot decode the DICOM pixel data ({syntax_name}: {_one_line(error)}).", path=name,
                             fix=fix) from None
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        pixels = pixels[0]  # multi-frame: the first frame is the radiograph
    return pixels


def _dicom_monochrome_to_unit(pixels: np.ndarray, dataset, name: str) -> np.ndarray:
    """Modality LUT (rescale), then VOI LUT or window, then scaled to [0, 1] by the output range of that step."""
    from pydicom.pixels import apply_modality_lut, apply_voi, apply_windowing

    values = apply_modality_lut(pixels, dataset)
    if np.issubdtype(values.dtype, np.floating) and np.all(np.mod(values, 1) == 0):
        values = values.astype(np.int64)  # VOI LUT lookup wants integers
    try:
        if _has_voi_lut(dataset):
            bits = int(dataset.VOILUTSequence[0].LUTDescriptor[2])
            return _to_unit(apply_voi(values, dataset), 0.0, float(2**bits - 1))
        if dataset.get("WindowCenter") is not None and dataset.get("WindowWidth") is not None:
            low, high = _window_output_range(dataset)
            return _to_unit(apply_windowing(values, dataset), low, high)
    except (ValueError, NotImplementedError, AttributeError, IndexError, TypeError) as error:
        raise ImageLoadError(f"invalid DICOM VOI LUT / window ({_one_line(error)}).", path=name,
                             fix="fix or remove the VOI LUT / WindowCenter / WindowWidth attributes.") from None
    return _min_max(values.astype(np.float32), name)


def _has_voi_lut(dataset) -> bool:
    sequence = dataset.get("VOILUTSequence")
    return bool(sequence) and None not in (sequence[0].get("LUTDescriptor"), sequence[0].get("LUTData"))


def _window_output_range(dataset) -> tuple[float, float]:
    """The output range pydicom's ``apply_windowing`` maps into (stored range, rescaled)."""
    bits = int(dataset.get("BitsStored", 16))
    if dataset.get("ModalityLUTSequence"):
        low, high = 0.0, float(2 ** int(dataset.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    elif int(dataset.get("PixelRepresentation", 0)) == 0:
        low, high = 0.0, float(2**bits - 1)
    else:
        low, high = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    slope, intercept = dataset.get("RescaleSlope"), dataset.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        low, high = low * float(slope) + float(intercept), high * float(slope) + float(intercept)
    return min(low, high), max(low, high)


def _dicom_colour_to_gray(pixels: np.ndarray, dataset, photometric: str) -> np.ndarray:
    from pydicom.pixels import apply_color_lut, convert_color_space

    if photometric == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, dataset)
    elif photometric.startswith("YBR"):
        pixels = convert_color_space(pixels, photometric, "RGB")
    bits = int(dataset.get("BitsStored", 8))
    if photometric == "PALETTE COLOR":
        bits = 16 if pixels.dtype == np.uint16 else 8
    rgb = pixels.astype(np.float32) / float(2**bits - 1)
    gray = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    return np.ascontiguousarray(np.clip(gray, 0.0, 1.0), dtype=np.float32)


# ------------------------------------------------------------------------------------------------ helpers


def check_pixel_count(width: int, height: int, name: str) -> None:
    """Decompression-bomb guard: ImageLoadError if the image is empty or holds more than ``MAX_PIXELS`` pixels."""
    if width <= 0 or height <= 0:
        raise ImageLoadError(f"image has no pixels ({width}x{height}).", path=name, fix=_CORRUPT_FIX)
    if width * height > MAX_PIXELS:
        raise _too_large(name, f"{width}x{height} = {width * height:,} pixels, more than {MAX_PIXELS:,}")


def check_geometry(width: int, height: int, name: str | Path) -> None:
    """ImageLoadError if a decoded image is too small or too elongated to be a chest X-ray (``MIN_SIDE``,
    ``MAX_ASPECT_RATIO``)."""
    if min(width, height) < MIN_SIDE:
        raise ImageLoadError(f"image too small to be a chest X-ray ({width}x{height} px; at least {MIN_SIDE} px a "
                             "side is needed).", path=name, fix="use the radiograph itself, not a thumbnail or icon.")
    ratio = max(width, height) / min(width, height)
    if ratio > MAX_ASPECT_RATIO:
        raise ImageLoadError(f"image too elongated to be a chest X-ray ({width}x{height} px, {ratio:.1f}:1; at most "
                             f"{MAX_ASPECT_RATIO:g}:1 is accepted).", path=name,
                             fix="use the whole radiograph, not a strip or banner cut from it.")


def _too_large(name: str, detail: str) -> ImageLoadError:
    return ImageLoadError(f"image too large ({detail}); refused as a possible decompression bomb.", path=name,
                          fix=f"downscale it below {MAX_PIXELS:,} pixels first, or remove it.")


def _to_unit(values: np.ndarray, low: float, high: float) -> np.ndarray:
    if high <= low:
        return np.zeros(values.shape, dtype=np.float32)
    return np.clip((values.astype(np.float32) - low) / (high - low), 0.0, 1.0)


def _min_max(values: np.ndarray, name: str) -> np.ndarray:
    if not np.all(np.isfinite(values)):
        raise ImageLoadError("image holds NaN or infinite values.", path=name, fix=_CORRUPT_FIX)
    return _to_unit(values, float(values.min()), float(values.max()))


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def scan_image_file(path: str) -> dict[str, object]:
    """Read, hash and fully decode one file for the manifest: width, height, format, sha256, status, error.

    Never raises for a bad file: the reason goes to ``error`` (status ``error``), so one bad image in a large set
    is counted and listed instead of stopping the scan. An image refused by ``check_geometry`` keeps its size.
    """
    import hashlib

    result: dict[str, object] = {"width": None, "height": None, "format": "", "sha256": "", "status": "error",
                                 "error": ""}
    try:
        data = read_file_bytes(path)
        result["sha256"] = hashlib.sha256(data).hexdigest()
        decoded = decode_image_bytes(data, path)
        result.update(width=decoded.width, height=decoded.height, format=decoded.format)
        check_geometry(decoded.width, decoded.height, path)
    except ImageLoadError as error:
        result["error"] = error.message
        return result
    result["status"] = "ok"
    return result

