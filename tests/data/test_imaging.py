"""Image decoding: JPEG/PNG 8/16-bit, gray/RGB/RGBA/palette, EXIF orientation, DICOM (rescale, VOI LUT, window,
MONOCHROME1), the decompression-bomb guard and every unreadable file → ImageLoadError naming the file."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from data_helpers import make_dicom, save_image
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from pneumoscope.data.imaging import (
    MAX_PIXELS,
    decode_image_bytes,
    load_image,
    load_image_bytes,
    scan_image_file,
    unit_float,
)
from pneumoscope.data.preprocess import preprocess
from pneumoscope.errors import ImageLoadError


def ramp(height: int = 32, width: int = 48) -> np.ndarray:
    """uint8 image whose value grows left to right (so orientation and inversion are visible)."""
    return np.tile(np.linspace(0, 255, width).round().astype(np.uint8), (height, 1))


# ------------------------------------------------------------------------------------------------ Pillow formats


def test_gray_png_is_float_in_unit_range_with_exact_values(tmp_path):
    image = ramp()
    gray = load_image(save_image(tmp_path / "a.png", image))
    assert gray.dtype == np.float32 and gray.shape == image.shape
    np.testing.assert_allclose(gray, image / 255.0, atol=1e-6)


def test_rgb_jpeg_with_equal_channels_matches_gray(tmp_path, make_xray):
    gray_u8 = make_xray(64, seed=3)
    rgb = np.repeat(gray_u8[..., None], 3, axis=-1)
    from_rgb = load_image(save_image(tmp_path / "rgb.jpeg", rgb, quality=95))
    from_gray = load_image(save_image(tmp_path / "gray.jpeg", gray_u8, quality=95))
    assert from_rgb.shape == (64, 64)
    assert np.abs(from_rgb - from_gray).mean() < 2 / 255  # JPEG noise only


def test_rgba_alpha_is_composited_onto_black(tmp_path):
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., :3] = 200
    rgba[:, :4, 3] = 255  # left half opaque, right half transparent
    gray = load_image(save_image(tmp_path / "a.png", rgba))
    np.testing.assert_allclose(gray[:, :4], 200 / 255, atol=1e-6)
    np.testing.assert_allclose(gray[:, 4:], 0.0, atol=1e-6)


def test_palette_png(tmp_path):
    image = Image.fromarray(ramp()).convert("P")
    path = tmp_path / "p.png"
    image.save(path)
    assert Image.open(path).mode == "P"
    np.testing.assert_allclose(load_image(path), ramp() / 255.0, atol=1 / 255)


def test_16bit_png_keeps_its_scale(tmp_path):
    full = (np.linspace(0, 65535, 32 * 48).reshape(32, 48)).astype(np.uint16)
    path = tmp_path / "full16.png"
    Image.fromarray(full).save(path)
    assert Image.open(path).mode.startswith("I")
    np.testing.assert_allclose(load_image(path), full / 65535.0, atol=1e-4)


def test_12bit_values_in_16bit_png_are_scaled_by_12_bits(tmp_path):
    twelve = (np.linspace(0, 3000, 32 * 48).reshape(32, 48)).astype(np.uint16)  # a 12-bit detector's output
    path = tmp_path / "twelve.png"
    Image.fromarray(twelve).save(path)
    gray = load_image(path)
    np.testing.assert_allclose(gray, twelve / 4095.0, atol=1e-4)


def test_exif_orientation_is_applied(tmp_path):
    image = ramp(20, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    path = tmp_path / "rotated.jpeg"
    Image.fromarray(image).save(path, exif=exif, quality=100)
    gray = load_image(path)
    assert gray.shape == (40, 20)
    # after a clockwise turn the left→right ramp runs top→bottom
    assert gray[0].mean() < 0.1 and gray[-1].mean() > 0.9


def test_png_content_with_jpeg_extension_is_read_by_content(tmp_path):
    path = tmp_path / "really_a_png.jpeg"
    Image.fromarray(ramp()).save(path, format="PNG")
    decoded = decode_image_bytes(path.read_bytes(), str(path))
    assert decoded.format == "png"
    assert decoded.gray.dtype == np.uint8  # an 8-bit file stays 8-bit until preprocessing
    np.testing.assert_allclose(unit_float(decoded.gray), ramp() / 255.0, atol=1e-6)


def test_load_image_bytes_matches_load_image(tmp_path, make_xray):
    path = save_image(tmp_path / "x.png", make_xray(48))
    np.testing.assert_array_equal(load_image_bytes(path.read_bytes(), "upload.png"), load_image(path))


# ------------------------------------------------------------------------------------------------ bad files


@pytest.mark.parametrize(("content", "reason"), [
    (b"", "empty file"),
    (b"this is a radiology report, not a picture\n" * 10, "not an image"),
    (b"\x00\x01\x02" * 100, "not an image"),
])
def test_unusable_files_name_the_file(tmp_path, content, reason):
    path = tmp_path / "bad.jpeg"
    path.write_bytes(content)
    with pytest.raises(ImageLoadError, match=reason) as info:
        load_image(path)
    assert str(path) in str(info.value) and "Fix:" in str(info.value)
    assert "\n" not in str(info.value)


def test_truncated_jpeg_is_refused(tmp_path, make_xray):
    whole = save_image(tmp_path / "whole.jpeg", make_xray(128), quality=95).read_bytes()
    cut = tmp_path / "cut.jpeg"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ImageLoadError, match="truncated") as info:
        load_image(cut)
    assert "cut.jpeg" in str(info.value)


def test_truncated_png_is_refused(tmp_path, make_xray):
    whole = save_image(tmp_path / "whole.png", make_xray(128)).read_bytes()
    with pytest.raises(ImageLoadError, match="truncated|corrupt"):
        load_image_bytes(whole[: len(whole) // 2], "cut.png")


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageLoadError, match="not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageLoadError, match="folder"):
        load_image(tmp_path)


def _png_claiming_size(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose header claims ``width`` x ``height`` (a decompression bomb's header)."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = bytes(data[12:16]) + struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr) & 0xFFFFFFFF)
    return bytes(data)


@pytest.mark.parametrize("side", [9_000, 40_000])  # above our limit; above Pillow's own bomb limit
def test_decompression_bomb_is_refused_before_decoding(side):
    assert side * side > MAX_PIXELS
    with pytest.raises(ImageLoadError, match="decompression bomb") as info:
        load_image_bytes(_png_claiming_size(side, side), "bomb.png")
    assert "bomb.png" in str(info.value)


def test_scan_records_errors_instead_of_raising(tmp_path, make_xray):
    good = scan_image_file(str(save_image(tmp_path / "good.png", make_xray(40))))
    assert good["status"] == "ok" and (good["width"], good["height"]) == (40, 40) and good["format"] == "png"
    assert len(good["sha256"]) == 64
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    bad = scan_image_file(str(empty))
    assert bad["status"] == "error" and "empty" in bad["error"] and bad["width"] is None


# ------------------------------------------------------------------------------------------------ shrink on load


@pytest.mark.parametrize(("side", "shrink_to", "scale"), [(2400, 64, 8), (1200, 64, 4), (1200, 128, 2),
                                                          (1200, 256, 1), (200, 128, 1)])
def test_jpeg_shrinks_on_load_while_both_sides_keep_twice_the_target(tmp_path, make_xray, side, shrink_to, scale):
    image = np.asarray(Image.fromarray(make_xray(256, seed=1)).resize((side, side * 3 // 4)))
    data = save_image(tmp_path / "big.jpeg", image, quality=95).read_bytes()
    full = decode_image_bytes(data, "big.jpeg")
    shrunk = decode_image_bytes(data, "big.jpeg", shrink_to=shrink_to)
    assert full.gray.shape == image.shape and full.source_size == (side, side * 3 // 4)
    assert shrunk.gray.shape == (-(-image.shape[0] // scale), -(-image.shape[1] // scale))
    assert min(shrunk.gray.shape) >= min(2 * shrink_to, min(image.shape))
    assert shrunk.source_size == full.source_size  # the geometry rule judges the file, not the decode
    if scale > 1:  # an antialiased reduction: the same picture as the full decode, reduced
        reduced = preprocess(full.gray, 64)
        assert np.abs(preprocess(shrunk.gray, 64).astype(int) - reduced).mean() < 1.5


def test_shrink_on_load_leaves_other_formats_as_stored(tmp_path, make_xray):
    image = np.asarray(Image.fromarray(make_xray(256, seed=2)).resize((1024, 768)))
    data = save_image(tmp_path / "big.png", image).read_bytes()
    decoded = decode_image_bytes(data, "big.png", shrink_to=64)
    np.testing.assert_array_equal(decoded.gray, image)
    assert decoded.file_size is None


def test_shrunk_rotated_jpeg_reports_its_displayed_size(tmp_path):
    image = np.tile(np.linspace(0, 255, 1600).round().astype(np.uint8), (800, 1))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpeg"
    Image.fromarray(image).save(path, exif=exif, quality=95)
    decoded = decode_image_bytes(path.read_bytes(), path.name, shrink_to=100)
    assert decoded.gray.shape == (400, 200) and decoded.source_size == (800, 1600)
    assert decoded.gray[0].mean() < 30 and decoded.gray[-1].mean() > 225


# ------------------------------------------------------------------------------------------------ DICOM


def _dicom_ramp(bits_stored: int = 12) -> np.ndarray:
    return np.tile(np.linspace(0, 2**bits_stored - 1, 48).round().astype(np.uint16), (32, 1))


def test_dicom_16bit_without_window_is_min_max_scaled(tmp_path):
    pixels = _dicom_ramp() // 2 + 300
    gray = load_image(make_dicom(tmp_path / "a.dcm", pixels, BitsStored=12))
    expected = (pixels - pixels.min()) / (pixels.max() - pixels.min())
    np.testing.assert_allclose(gray, expected, atol=1e-6)


def test_dicom_monochrome1_is_inverted(tmp_path):
    pixels = _dicom_ramp()
    mono2 = load_image(make_dicom(tmp_path / "m2.dcm", pixels, BitsStored=12))
    mono1 = load_image(make_dicom(tmp_path / "m1.dcm", pixels, photometric="MONOCHROME1", BitsStored=12))
    np.testing.assert_allclose(mono1, 1.0 - mono2, atol=1e-6)
    assert mono1[:, 0].mean() > 0.99  # lowest stored value is white in MONOCHROME1


def test_dicom_rescale_then_window(tmp_path):
    pixels = _dicom_ramp()  # stored 0..4095
    # rescaled value = 2 * stored - 1000, so the window [1000, 3000] covers stored 1000..2000
    path = make_dicom(tmp_path / "w.dcm", pixels, BitsStored=12, RescaleSlope=2, RescaleIntercept=-1000,
                      WindowCenter=2000, WindowWidth=2000)
    gray = load_image(path)
    rescaled = pixels.astype(float) * 2 - 1000
    assert np.all(gray[rescaled <= 1000] == 0.0) and np.all(gray[rescaled >= 3000] == 1.0)
    inside = (rescaled > 1100) & (rescaled < 2900)
    np.testing.assert_allclose(gray[inside], (rescaled[inside] - 1000) / 2000, atol=0.01)


def test_dicom_voi_lut_sequence(tmp_path):
    pixels = _dicom_ramp(8).astype(np.uint16)  # stored 0..255
    item = Dataset()
    item.LUTDescriptor = [256, 0, 8]
    item.add_new(0x00283006, "US", list(range(255, -1, -1)))  # LUT Data: an inverting LUT
    path = make_dicom(tmp_path / "lut.dcm", pixels, BitsStored=8, VOILUTSequence=Sequence([item]))
    gray = load_image(path)
    np.testing.assert_allclose(gray, (255 - pixels) / 255.0, atol=1e-6)


def test_dicom_8bit_and_without_preamble(tmp_path):
    pixels = ramp()
    path = make_dicom(tmp_path / "plain.dcm", pixels, preamble=False)
    assert path.read_bytes()[128:132] != b"DICM"
    np.testing.assert_allclose(load_image(path), pixels / 255.0, atol=1e-6)


def test_dicom_bytes_upload(tmp_path):
    path = make_dicom(tmp_path / "a.dcm", _dicom_ramp(), BitsStored=12)
    np.testing.assert_array_equal(load_image_bytes(path.read_bytes(), "upload"), load_image(path))


def test_dicom_without_pixel_data_is_a_clear_error(tmp_path):
    path = make_dicom(tmp_path / "report.dcm", None)
    with pytest.raises(ImageLoadError, match="no pixel data") as info:
        load_image(path)
    assert "report.dcm" in str(info.value)


def test_dicom_with_truncated_pixel_data(tmp_path):
    path = make_dicom(tmp_path / "short.dcm", _dicom_ramp(), BitsStored=12)
    data = path.read_bytes()
    with pytest.raises(ImageLoadError) as info:
        load_image_bytes(data[: len(data) - 1000], "short.dcm")
    assert "short.dcm" in str(info.value)


def test_huge_dicom_header_is_refused(tmp_path):
    path = make_dicom(tmp_path / "big.dcm", _dicom_ramp(), BitsStored=12)
    from pydicom import dcmread

    ds = dcmread(path)
    ds.Rows, ds.Columns = 20_000, 20_000
    ds.save_as(path)
    with pytest.raises(ImageLoadError, match="decompression bomb"):
        load_image(path)


def test_text_named_dcm_is_not_an_image(tmp_path):
    path = tmp_path / "notes.dcm"
    path.write_text("patient notes\n" * 20)
    with pytest.raises(ImageLoadError, match="not an image|not a readable DICOM"):
        load_image(Path(path))


def test_damaged_files_give_an_image_or_image_load_error_never_a_crash(tmp_path, make_xray):
    """Random byte damage and truncation of JPEG, PNG and DICOM files: every outcome is either a valid image or an
    ImageLoadError (what the manifest scan relies on to list bad files instead of stopping)."""
    originals = [save_image(tmp_path / "a.jpeg", make_xray(64), quality=90).read_bytes(),
                 save_image(tmp_path / "b.png", make_xray(64, seed=2)).read_bytes(),
                 make_dicom(tmp_path / "c.dcm", _dicom_ramp(), BitsStored=12, WindowCenter=2000,
                            WindowWidth=1000).read_bytes()]
    rng = np.random.default_rng(0)
    outcomes = {"image": 0, "error": 0}
    for trial in range(300):
        data = bytearray(originals[trial % len(originals)])
        for _ in range(int(rng.integers(1, 12))):
            data[int(rng.integers(0, min(len(data), 1500)))] = int(rng.integers(0, 256))
        if rng.random() < 0.3:
            data = data[: int(rng.integers(1, len(data)))]
        try:
            gray = load_image_bytes(bytes(data), f"damaged{trial}")
        except ImageLoadError as error:
            assert f"damaged{trial}" in str(error)
            outcomes["error"] += 1
            continue
        assert gray.ndim == 2 and gray.dtype == np.float32 and np.isfinite(gray).all()
        assert 0.0 <= gray.min() and gray.max() <= 1.0
        outcomes["image"] += 1
    assert outcomes["error"] > 50 and outcomes["image"] > 50  # both kinds of damage were exercised


@pytest.mark.parametrize(("attributes", "reason"), [
    ({"Rows": 2}, "not an image"),  # the pixels then read as 16 frames of 2 rows
    ({"PhotometricInterpretation": "RGB"}, "not an image"),  # one sample per pixel read as colour
    ({"WindowCenter": 100, "WindowWidth": float("nan")}, "invalid values"),
])
def test_dicom_header_that_does_not_match_its_pixels_is_refused(tmp_path, attributes, reason):
    """Found by tests/data/test_imaging_properties.py: these decoded to a 3-D / 1-D array or to NaN."""
    pixels = (ramp(32, 32).astype(np.uint16) * 16)
    path = make_dicom(tmp_path / "hostile.dcm", pixels, BitsStored=12, **attributes)
    with pytest.raises(ImageLoadError, match=reason) as info:
        load_image(path)
    assert "hostile.dcm" in str(info.value)

