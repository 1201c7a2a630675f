"""DICOM header checks (modality, body part, view, frames, age), read before the pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from xray_images import synthetic_xray, write_dicom_file

from pneumoscope.data.dicom_header import DicomHeader, header_checks, parse_age, read_header


def header_of(tmp_path: Path, pixels: np.ndarray | None = None, **attributes) -> DicomHeader:
    path = write_dicom_file(tmp_path / "x.dcm", synthetic_xray(64) if pixels is None else pixels, **attributes)
    header = read_header(path.read_bytes())
    assert header is not None
    return header


def failed(header: DicomHeader) -> dict[str, str]:
    return {check.name: check.reason for check in header.checks if not check.ok}


@pytest.mark.parametrize("modality", ["CR", "DX"])
def test_a_frontal_chest_radiograph_passes_every_check(tmp_path: Path, modality: str) -> None:
    header = header_of(tmp_path, Modality=modality, BodyPartExamined="CHEST", ViewPosition="PA", PatientAge="003Y")
    assert failed(header) == {} and [c.name for c in header.checks] == ["modality", "body_part", "view", "frames"]
    assert header.age_years == 3.0


@pytest.mark.parametrize("modality", ["CT", "MR", "US", "NM", "PT", "MG", "XA"])
def test_other_modalities_are_refused_with_a_one_line_reason(tmp_path: Path, modality: str) -> None:
    header = header_of(tmp_path, Modality=modality)
    assert failed(header) == {"modality": f"modality {modality}"}
    detail = next(c.detail for c in header.checks if c.name == "modality")
    assert modality in detail and "\n" not in detail and "CR or DX" in detail


def test_missing_or_generic_modality_is_left_to_the_image_checks(tmp_path: Path) -> None:
    assert failed(header_of(tmp_path, Modality="OT")) == {}
    checks = header_checks(DicomHeader())
    assert all(c.ok for c in checks)


def test_body_part_view_and_frames(tmp_path: Path) -> None:
    assert failed(header_of(tmp_path, BodyPartExamined="HAND")) == {"body_part": "body part HAND"}
    assert failed(header_of(tmp_path, BodyPartExamined="THORAX")) == {}
    assert failed(header_of(tmp_path, ViewPosition="LL")) == {"view": "lateral"}
    assert failed(header_of(tmp_path, ViewPosition="RL")) == {"view": "lateral"}
    assert failed(header_of(tmp_path, ViewPosition="AP")) == {}
    assert failed(header_of(tmp_path, ViewPosition="LAO")) == {"view": "view LAO"}
    frames = np.stack([synthetic_xray(32, seed=i) for i in range(3)])
    header = header_of(tmp_path, frames)
    assert header.frames == 3 and failed(header) == {"frames": "multi-frame"}


def test_view_code_sequence_is_read_when_view_position_is_absent(tmp_path: Path) -> None:
    import pydicom

    code = pydicom.Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "R-10232", "SRT", "lateral"
    header = header_of(tmp_path, ViewCodeSequence=pydicom.Sequence([code]))
    assert header.view == "LATERAL" and failed(header) == {"view": "lateral"}


@pytest.mark.parametrize(("text", "years"), [("045Y", 45.0), ("018M", 1.5), ("006W", 6 * 7 / 365.25),
                                             ("010D", 10 / 365.25), ("", None), ("45", None), ("abc", None)])
def test_patient_age_is_parsed_in_years(text: str, years: float | None) -> None:
    assert parse_age(text) == (None if years is None else pytest.approx(years))


def test_non_dicom_bytes_have_no_header() -> None:
    assert read_header(b"\x89PNG\r\n\x1a\n not dicom at all") is None


def test_pydicom_test_files_of_other_modalities_are_refused() -> None:
    from pydicom.data import get_testdata_file

    for name, modality in (("CT_small.dcm", "CT"), ("MR_small.dcm", "MR")):
        header = read_header(Path(get_testdata_file(name)).read_bytes())
        assert header is not None and failed(header).get("modality") == f"modality {modality}"
