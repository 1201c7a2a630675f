"""Property-based tests (Hypothesis) of the image readers: whatever the bytes, ``load_image``,
``load_image_bytes`` and ``inference.sources.load_input_bytes`` (what predict and the server call) give a valid
image or a ``PneumoscopeError``, never another exception.

Inputs: arbitrary bytes under image-like names; truncations of real files (JPEG, 8- and 16-bit PNG, DICOM with a
window, MONOCHROME1 DICOM with a rescale; the real Kermany / COVID-19 files too where the data is present); byte
mutations of their headers; and DICOM files whose header attributes are set to hostile values. Bounded (a few hundred
examples in all, derandomised) so that CI stays fast and repeatable.
"""

from __future__ import annotations

import functools
import io
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from data_helpers import make_dicom
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image
from xray_images import synthetic_xray

from pneumoscope.data.imaging import load_image, load_image_bytes
from pneumoscope.errors import PneumoscopeError
from pneumoscope.paths import data_root

BOUNDED = settings(max_examples=int(os.environ.get("PNEUMOSCOPE_HYPOTHESIS_EXAMPLES", "60")), deadline=None,
                   derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])
NAMES = st.sampled_from(["upload", "x.png", "x.jpg", "x.dcm", "x.tif", "x.bmp", "IM-0001-0001.jpeg", "00012"])


def _encoded(array: np.ndarray, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _dicom(tmp: Path, name: str, pixels: np.ndarray, **attributes) -> bytes:
    return make_dicom(tmp / name, pixels, **attributes).read_bytes()


@functools.cache
def seed_files() -> dict[str, bytes]:
    """Valid files of every kind the readers take (built once), keyed by a name with the right extension."""
    import tempfile

    xray = synthetic_xray(64, seed=1)
    files = {
        "xray.jpg": _encoded(xray, "JPEG", quality=90),
        "xray.png": _encoded(xray, "PNG"),
        "xray16.png": _encoded((xray.astype(np.uint16) * 257), "PNG"),
        "rgba.png": _encoded(np.dstack([xray, xray, xray, np.full_like(xray, 200)]), "PNG"),
    }
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        files["window.dcm"] = _dicom(tmp, "w.dcm", xray.astype(np.uint16) * 16, BitsStored=12,
                                     WindowCenter=2048, WindowWidth=4096)
        files["mono1.dcm"] = _dicom(tmp, "m.dcm", xray.astype(np.uint16), photometric="MONOCHROME1",
                                    RescaleSlope=2, RescaleIntercept=-100)
    root = data_root()
    for pattern, name in (("chest_xray/train/NORMAL/*.jpeg", "real.jpeg"), ("covid19_radiography/Normal/*.png",
                                                                             "real.png")):
        found = sorted(root.glob(pattern))[:1]
        if found:
            files[name] = found[0].read_bytes()
    return files


SEEDS = st.sampled_from(sorted(seed_files()))


def _check_result(gray: np.ndarray) -> None:
    assert isinstance(gray, np.ndarray) and gray.dtype == np.float32 and gray.ndim == 2 and gray.size > 0
    assert np.isfinite(gray).all() and gray.min() >= 0.0 and gray.max() <= 1.0


def _decodes_or_refuses(data: bytes, name: str) -> np.ndarray | None:
    """The decoded image (checked), or None where a PneumoscopeError refused it; any other exception fails."""
    from pneumoscope.inference.sources import load_input_bytes

    try:
        gray = load_image_bytes(data, name)
    except PneumoscopeError as error:
        assert str(error).strip()
        with pytest.raises(PneumoscopeError):
            load_input_bytes(data, name)  # what predict and the server read: refused too
        return None
    _check_result(gray)
    try:
        loaded = load_input_bytes(data, name)
    except PneumoscopeError:
        return gray  # e.g. the geometry rule of the entry points
    np.testing.assert_array_equal(loaded.gray, gray)
    assert np.isfinite(loaded.colourfulness) and loaded.colourfulness >= 0
    return gray


def test_every_seed_file_decodes():
    for name, data in seed_files().items():
        _check_result(load_image_bytes(data, name))


@BOUNDED
@given(data=st.binary(max_size=4096), name=NAMES)
def test_arbitrary_bytes(data, name):
    _decodes_or_refuses(data, name)


@BOUNDED
@given(seed=SEEDS, prefix=st.binary(min_size=1, max_size=160))
def test_arbitrary_bytes_behind_a_real_signature(seed, prefix):
    """Random bytes after the first bytes of a real file (the format is recognised, everything after is garbage)."""
    data = seed_files()[seed]
    keep = 132 if seed.endswith(".dcm") else 8
    _decodes_or_refuses(data[:keep] + prefix * 8, seed)


@BOUNDED
@given(seed=SEEDS, fraction=st.floats(0.0, 1.0))
def test_truncated_files(seed, fraction):
    data = seed_files()[seed]
    _decodes_or_refuses(data[: int(len(data) * fraction)], seed)


@BOUNDED
@given(seed=SEEDS, edits=st.lists(st.tuples(st.integers(0, 1023), st.integers(0, 255)), min_size=1, max_size=8))
def test_header_byte_mutations(seed, edits):
    data = bytearray(seed_files()[seed])
    for position, value in edits:
        data[position % min(len(data), 1024)] = value
    _decodes_or_refuses(bytes(data), seed)


_HOSTILE_VALUES = st.one_of(st.integers(-(2**31), 2**31), st.floats(allow_nan=True, allow_infinity=True),
                            st.sampled_from(["", "MONOCHROME1", "RGB", "YBR_FULL", "PALETTE COLOR", "1\\2", "abc"]))
_DICOM_ATTRIBUTES = st.sampled_from(["Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "SamplesPerPixel",
                                     "PixelRepresentation", "PhotometricInterpretation", "NumberOfFrames",
                                     "RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth",
                                     "PlanarConfiguration"])


@BOUNDED
@given(seed=st.sampled_from(["window.dcm", "mono1.dcm"]),
       changes=st.lists(st.tuples(_DICOM_ATTRIBUTES, _HOSTILE_VALUES), min_size=1, max_size=4))
def test_dicom_header_attributes_set_to_hostile_values(seed, changes):
    import pydicom

    dataset = pydicom.dcmread(io.BytesIO(seed_files()[seed]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about each invalid value it is asked to store
        try:
            for keyword, value in changes:
                setattr(dataset, keyword, value)
            buffer = io.BytesIO()
            dataset.save_as(buffer, enforce_file_format=True)
        except Exception:  # noqa: BLE001 - pydicom itself refuses to write this value: not a file we can test
            assume(False)
    _decodes_or_refuses(buffer.getvalue(), seed)


@settings(max_examples=20, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(seed=SEEDS, fraction=st.floats(0.0, 1.0))
def test_load_image_from_disk_agrees_with_load_image_bytes(tmp_path, seed, fraction):
    data = seed_files()[seed][: max(1, int(len(seed_files()[seed]) * fraction))]
    path = tmp_path / seed
    path.write_bytes(data)
    try:
        expected = load_image_bytes(data, str(path))
    except PneumoscopeError as error:
        with pytest.raises(PneumoscopeError) as info:
            load_image(path)
        assert str(info.value) == str(error)
        return
    np.testing.assert_array_equal(load_image(path), expected)
