"""What a DICOM file's header says about the acquisition, checked before any pixel is decoded.

``read_header(data)`` parses the header only (``stop_before_pixels``) and ``header_checks(header)`` judges it for a
frontal chest radiograph model:

- ``modality``: CR / DX (and the older DR / RG) are radiographs; CT, MR, US, NM, PT, MG, XA, ... are refused
  (reason ``modality CT``); a missing or generic modality (``OT``, secondary capture) is left to the image checks;
- ``body_part``: CHEST (or THORAX / LUNG, or absent); anything else is ``body part HAND``;
- ``view``: PA / AP (ViewPosition, else the view code's meaning); lateral views are ``lateral``, other ones
  (oblique, decubitus, ...) ``view LAO``;
- ``frames``: one frame; several are ``multi-frame`` (a cine loop or a volume, not one radiograph).

``PatientAge`` is parsed (``age_years``) but judged by the model's applicability check, which knows the ages of the
population the model was trained on.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass, field

RADIOGRAPH_MODALITIES = frozenset({"CR", "DX", "DR", "RG"})
UNSTATED_MODALITIES = frozenset({"", "OT", "SC"})  # say nothing about the acquisition: left to the image checks
MODALITY_NAMES = {
    "CT": "computed tomography", "MR": "magnetic resonance", "US": "ultrasound", "NM": "nuclear medicine",
    "PT": "positron emission tomography", "MG": "mammography", "XA": "X-ray angiography", "RF": "fluoroscopy",
    "IO": "intra-oral radiograph", "PX": "panoramic dental radiograph", "OP": "ophthalmic photograph",
    "XC": "external camera photograph", "ES": "endoscopy", "SM": "slide microscopy", "ECG": "electrocardiogram",
    "SR": "structured report", "SEG": "segmentation", "RTDOSE": "radiotherapy dose", "RTPLAN": "radiotherapy plan",
    "RTSTRUCT": "radiotherapy structures", "RTIMAGE": "radiotherapy image", "BMD": "bone densitometry",
}
CHEST_BODY_PARTS = ("CHEST", "THORAX", "LUNG")
FRONTAL_VIEWS = frozenset({"PA", "AP"})
LATERAL_VIEWS = frozenset({"LL", "RL", "LAT", "LATERAL", "LLAT", "RLAT"})
_AGE = re.compile(r"^\s*(\d{1,3})\s*([DWMY])\s*$", re.IGNORECASE)
_AGE_UNIT_YEARS = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}


@dataclass(frozen=True)
class HeaderCheck:
    """One header attribute, what it says and whether a frontal chest radiograph model applies to it."""

    name: str  # modality, body_part, view, frames
    value: str  # as written in the header ("" when absent)
    ok: bool
    reason: str = ""  # short reason when not ok, e.g. "modality CT"
    detail: str = ""  # one line for people


@dataclass(frozen=True)
class DicomHeader:
    """The acquisition attributes of one DICOM file (empty strings where absent)."""

    modality: str = ""
    body_part: str = ""
    view: str = ""
    frames: int = 1
    patient_age: str = ""
    checks: tuple[HeaderCheck, ...] = field(default_factory=tuple)

    @property
    def age_years(self) -> float | None:
        """``PatientAge`` in years (``045Y`` → 45.0, ``018M`` → 1.5), None when absent or malformed."""
        return parse_age(self.patient_age)


def parse_age(text: str) -> float | None:
    """A DICOM age string (``nnnD``, ``nnnW``, ``nnnM``, ``nnnY``) in years; None if absent or malformed."""
    match = _AGE.match(text or "")
    if not match:
        return None
    return int(match.group(1)) * _AGE_UNIT_YEARS[match.group(2).upper()]


def read_header(data: bytes) -> DicomHeader | None:
    """The header of a DICOM file's bytes with its checks; None when ``data`` cannot be parsed as DICOM."""
    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
    except Exception:  # noqa: BLE001 - not DICOM, or a header too damaged to read: the decoder will say so
        return None
    if data[128:132] != b"DICM" and "SOPClassUID" not in dataset and "Modality" not in dataset:
        return None  # force=True parses any bytes; without a preamble, a DICOM file still names its class
    return header_from_dataset(dataset)


def header_from_dataset(dataset) -> DicomHeader:
    """The ``DicomHeader`` of a pydicom dataset (pixels need not be loaded)."""
    header = DicomHeader(
        modality=_text(dataset, "Modality").upper(),
        body_part=_text(dataset, "BodyPartExamined").upper(),
        view=_view(dataset),
        frames=_frames(dataset),
        patient_age=_text(dataset, "PatientAge").upper(),
    )
    return DicomHeader(header.modality, header.body_part, header.view, header.frames, header.patient_age,
                       header_checks(header))


def header_checks(header: DicomHeader) -> tuple[HeaderCheck, ...]:
    """Modality, body part, view and frame-count checks (see the module docstring)."""
    return (_modality_check(header.modality), _body_part_check(header.body_part), _view_check(header.view),
            _frames_check(header.frames))


def _modality_check(modality: str) -> HeaderCheck:
    if modality in RADIOGRAPH_MODALITIES:
        return HeaderCheck("modality", modality, True)
    if modality in UNSTATED_MODALITIES:
        return HeaderCheck("modality", modality, True, detail="modality not stated; judged from the image")
    name = MODALITY_NAMES.get(modality, "not a radiograph")
    return HeaderCheck("modality", modality, False, f"modality {modality}",
                       f"DICOM modality {modality} ({name}): this model reads chest radiographs (CR or DX)")


def _body_part_check(body_part: str) -> HeaderCheck:
    if not body_part or any(part in body_part for part in CHEST_BODY_PARTS):
        return HeaderCheck("body_part", body_part, True)
    return HeaderCheck("body_part", body_part, False, f"body part {body_part}",
                       f"DICOM body part examined is {body_part}: this model reads chest X-rays")


def _view_check(view: str) -> HeaderCheck:
    if not view or view in FRONTAL_VIEWS:
        return HeaderCheck("view", view, True)
    if view in LATERAL_VIEWS or "LATERAL" in view:
        return HeaderCheck("view", view, False, "lateral",
                           f"DICOM view {view} is a lateral view: this model reads frontal (PA / AP) views")
    return HeaderCheck("view", view, False, f"view {view}",
                       f"DICOM view {view}: this model reads frontal (PA / AP) views")


def _frames_check(frames: int) -> HeaderCheck:
    if frames <= 1:
        return HeaderCheck("frames", str(frames), True)
    return HeaderCheck("frames", str(frames), False, "multi-frame",
                       f"{frames} frames (a cine loop or volume): this model reads single radiographs; "
                       "only the first frame was used")


def _text(dataset, keyword: str) -> str:
    value = dataset.get(keyword)
    if value is None:
        return ""
    if not isinstance(value, str) and hasattr(value, "__iter__"):
        value = "\\".join(str(v) for v in value)
    return " ".join(str(value).split())


def _view(dataset) -> str:
    """ViewPosition, else the first view code's meaning (``postero-anterior`` → PA, ``lateral`` → LATERAL)."""
    position = _text(dataset, "ViewPosition").upper()
    if position:
        return position
    codes = dataset.get("ViewCodeSequence") or []
    meaning = _text(codes[0], "CodeMeaning").lower() if len(codes) else ""
    if not meaning:
        return ""
    if "lateral" in meaning and "decubitus" not in meaning:
        return "LATERAL"
    if "postero-anterior" in meaning or "posterior-anterior" in meaning or meaning == "pa":
        return "PA"
    if "antero-posterior" in meaning or "anterior-posterior" in meaning or meaning == "ap":
        return "AP"
    return meaning.upper()


def _frames(dataset) -> int:
    try:
        return max(1, int(dataset.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1
