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


GEOMETRIES = {(1, 1): False, (5, 40_000): False, (15, 300): False, (16, 64): True, (64, 16): True, (16, 65): False,
              (300, 200): True}


@pytest.mark.parametrize(("size", "usable"), list(GEOMETRIES.items()), ids=[f"{w}x{h}" for w, h in GEOMETRIES])
def test_one_geometry_rule_for_the_manifest_predict_and_the_server(tmp_path, size, usable):
    """data inspect / training (the manifest scan), predict (load_input) and the server (decode_upload) accept and
    refuse the same images, for the same reason."""
    from pneumoscope.data.imaging import scan_image_file
    from pneumoscope.errors import ImageLoadError
    from pneumoscope.inference.sources import load_input
    from pneumoscope.serve.uploads import ServeError, decode_upload

    width, height = size
    pixels = (np.indices((height, width)).sum(axis=0) % 256).astype(np.uint8)
    path = tmp_path / "image.png"
    path.write_bytes(png_bytes(pixels))
    scanned = scan_image_file(str(path))
    assert (scanned["status"] == "ok") is usable and (scanned["width"], scanned["height"]) == size
    if usable:
        assert load_input(path).gray.shape == (height, width)
        assert decode_upload(path.read_bytes(), "image.png", 1 << 30).gray.shape == (height, width)
        return
    reason = "too small" if min(size) < 16 else "too elongated"
    assert reason in scanned["error"]
    with pytest.raises(ImageLoadError, match=reason):
        load_input(path)
    with pytest.raises(ServeError, match=reason) as refused:
        decode_upload(path.read_bytes(), "image.png", 1 << 30)
    assert refused.value.status_code == 422

