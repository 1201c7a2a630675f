"""Upload helpers: format sniffing by content and client file names reduced to safe base names."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from serve_helpers import dicom_bytes, jpeg_bytes, png_bytes

from pneumoscope.serve.uploads import safe_filename, sniff_format


def encoded(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def test_formats_are_recognised_by_content(make_xray):
    image = make_xray(32, 0)
    assert sniff_format(jpeg_bytes(image)) == "jpeg"
    assert sniff_format(png_bytes(image)) == "png"
    assert sniff_format(dicom_bytes(image)) == "dicom"
    assert sniff_format(dicom_bytes(None)) == "dicom"  # recognised as DICOM; decoding then reports no pixels
    for fmt, name in (("BMP", "bmp"), ("TIFF", "tiff"), ("WEBP", "webp"), ("GIF", "gif")):
        assert sniff_format(encoded(image, fmt)) == name


@pytest.mark.parametrize("data", [b"", b"hello", b"<html><body>x</body></html>", b"%PDF-1.7\n", b"\x00" * 200,
                                  b"PK\x03\x04zipfile"])
def test_non_images_are_not_recognised(data):
    assert sniff_format(data) is None


@pytest.mark.parametrize(("name", "safe"), [
    ("chest.png", "chest.png"),
    ("../../etc/passwd", "passwd"),
    ("C:\\Users\\me\\scan.dcm", "scan.dcm"),
    ("/abs/path/x.jpeg", "x.jpeg"),
    ("bad\x00name\r\n.png", "badname.png"),
    ('<script>"x".png', "scriptx.png"),
    ("", None),
    (None, None),
    ("dir/", None),
])
def test_client_file_names_become_safe_base_names(name, safe):
    assert safe_filename(name) == safe


def test_long_names_are_cut():
    assert len(safe_filename("a" * 1000 + ".png")) == 200
