"""Expanding predict inputs into files; decoding with colour measurement."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from xray_images import write_dicom_file

from pneumoscope.errors import DataError
from pneumoscope.inference.sources import (
    count_image_files,
    is_dicom_file,
    iter_image_files,
    load_input,
    load_input_bytes,
)


def write_dicom(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2") -> Path:
    """A minimal valid DICOM file holding ``pixels`` (uint8 grey)."""
    return write_dicom_file(path, pixels, PhotometricInterpretation=photometric)


@pytest.fixture
def tree(tmp_path: Path, make_xray) -> Path:
    root = tmp_path / "inputs"
    (root / "b" / "deeper").mkdir(parents=True)
    (root / "a").mkdir()
    (root / ".hidden").mkdir()
    Image.fromarray(make_xray(32, 1)).save(root / "a" / "one.jpeg")
    Image.fromarray(make_xray(32, 2)).save(root / "b" / "two.PNG")
    write_dicom(root / "b" / "deeper" / "IM0001", make_xray(32, 3))
    write_dicom(root / "b" / "deeper" / "1.2.840.10008.5", make_xray(32, 4))
    write_dicom(root / "b" / "DICOMDIR", make_xray(8, 5))
    Image.fromarray(make_xray(32, 6)).save(root / ".hidden" / "skip.png")
    (root / "a" / "README.txt").write_text("not an image")
    (root / "a" / "notes").write_text("no extension, not DICOM")
    return root


def test_folders_are_walked_recursively_in_sorted_order_picking_images_and_dicoms(tree: Path) -> None:
    files = [p.relative_to(tree).as_posix() for p in iter_image_files([tree])]
    assert files == ["a/one.jpeg", "b/two.PNG", "b/deeper/1.2.840.10008.5", "b/deeper/IM0001"]
    assert count_image_files([tree]) == 4


def test_files_named_explicitly_are_always_used(tree: Path) -> None:
    readme = tree / "a" / "README.txt"
    assert list(iter_image_files([readme, tree / "a"])) == [readme, tree / "a" / "one.jpeg"]


def test_expansion_is_lazy(tree: Path) -> None:
    files = iter_image_files([tree])
    assert isinstance(files, types.GeneratorType)
    assert next(files).name == "one.jpeg"


def test_missing_input_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="input not found"):
        list(iter_image_files([tmp_path / "nope.png"]))
    with pytest.raises(DataError, match="no input"):
        list(iter_image_files([]))


def test_dicom_detection_by_content(tree: Path) -> None:
    assert is_dicom_file(tree / "b" / "deeper" / "IM0001")
    assert not is_dicom_file(tree / "a" / "notes")
    assert not is_dicom_file(tree / "a" / "one.jpeg")


def test_load_input_measures_colour_only_for_colour_originals(tmp_path: Path, make_xray, rng) -> None:
    grey = Image.fromarray(make_xray(64, 1))
    grey.convert("RGB").save(tmp_path / "grey_as_rgb.jpg", quality=95)
    colour = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    write_dicom(tmp_path / "scan.dcm", make_xray(64, 2))

    assert load_input(tmp_path / "grey_as_rgb.jpg").colourfulness < 3
    assert load_input(tmp_path / "colour.png").colourfulness > 50
    dicom = load_input(tmp_path / "scan.dcm")
    assert dicom.colourfulness == 0.0
    assert dicom.gray.shape == (64, 64) and dicom.gray.dtype == np.float32
    uploaded = load_input_bytes((tmp_path / "colour.png").read_bytes(), "colour.png")
    assert uploaded.colourfulness > 50 and uploaded.gray.shape == (64, 64)
