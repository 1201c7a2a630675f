"""Synthetic chest-X-ray-like images for tests (a module, not conftest, so any test folder can import it)."""

from __future__ import annotations

import numpy as np


def synthetic_xray(size: int = 64, seed: int = 0, pneumonia: bool = False) -> np.ndarray:
    """A small grayscale uint8 image that looks vaguely like a chest X-ray (two dark lung fields on a bright body).

    ``pneumonia`` adds a bright opacity in one lung, so that tiny models can learn the difference in tests.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    body = 0.75 - 0.2 * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2)
    lungs = np.exp(-(((xx - 0.32) / 0.12) ** 2 + ((yy - 0.5) / 0.25) ** 2))
    lungs += np.exp(-(((xx - 0.68) / 0.12) ** 2 + ((yy - 0.5) / 0.25) ** 2))
    image = body - 0.5 * lungs
    if pneumonia:
        cx = 0.32 if rng.random() < 0.5 else 0.68
        image += 0.35 * np.exp(-(((xx - cx) / 0.08) ** 2 + ((yy - 0.6) / 0.1) ** 2))
    image += rng.normal(0, 0.03, size=image.shape)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def write_dicom_file(path, pixels: np.ndarray, **attributes):
    """A valid DICOM file of grey uint8 ``pixels`` (one frame, or (frames, H, W)) with header ``attributes``
    (e.g. ``Modality="CT"``, ``ViewPosition="LL"``, ``PatientAge="045Y"``); Modality defaults to CR."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.PatientID = "test"
    if pixels.ndim == 3:
        ds.NumberOfFrames = pixels.shape[0]
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    for key, value in attributes.items():
        setattr(ds, key, value)
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path
