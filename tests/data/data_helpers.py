"""Helpers of the data-layer tests: write images with Pillow and small DICOM files with pydicom.

(A module of its own, not conftest.py: ``from conftest import ...`` would pick another folder's conftest when the
whole suite runs.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def save_image(path: Path, array: np.ndarray, **params) -> Path:
    """Write ``array`` with Pillow (format from the suffix unless ``format=`` is given)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **params)
    return path


def make_dicom(path: Path, pixels: np.ndarray, *, photometric: str = "MONOCHROME2", preamble: bool = True,
               **attributes) -> Path:
    """A small uncompressed DICOM image file built with pydicom; ``attributes`` are set on the dataset."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # digital X-ray image
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.PatientID = "TEST"
    if pixels is not None:
        bits = 8 if pixels.dtype == np.uint8 else 16
        ds.Rows, ds.Columns = pixels.shape[:2]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated = bits
        ds.BitsStored = attributes.pop("BitsStored", bits)
        ds.HighBit = ds.BitsStored - 1
        ds.PixelRepresentation = 1 if np.issubdtype(pixels.dtype, np.signedinteger) else 0
        ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    for key, value in attributes.items():
        setattr(ds, key, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=preamble, little_endian=True, implicit_vr=False)
    return path
