"""Synthetic CT data for the tests and the benchmarks: pydicom datasets made from HU arrays.

Every slice is CT Image Storage, explicit VR little endian, signed 16-bit with
rescale intercept -1024 (stored value = HU + 1024), axial, 0.7 mm pixels. A
caller adds or overrides any attribute by keyword.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid


def ct_slice(hu: np.ndarray, *, study: str, series: str, number: int, **attributes) -> Dataset:
    """Return a CT slice holding ``hu`` (Hounsfield units) as instance ``number`` of ``series``."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.PatientName, ds.PatientID, ds.Modality = "SYNTHETIC^CT", "SYNTH-1", "CT"
    ds.StudyDate, ds.BodyPartExamined, ds.InstanceNumber = "20260101", "CHEST", number
    ds.Rows, ds.Columns = hu.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.PixelSpacing, ds.SliceThickness = [0.7, 0.7], 1.0
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.PixelData = np.rint(hu + 1024).astype(np.int16).tobytes()
    return ds


def chest(size: int, index: int = 0) -> np.ndarray:
    """A chest-like slice in HU: air, a body, two lungs, a vertebra that moves with ``index``."""
    y, x = np.mgrid[0:size, 0:size]
    body = ((x - size / 2) / (size * 0.45)) ** 2 + ((y - size / 2) / (size * 0.35)) ** 2 < 1
    lungs = (np.abs(x - size / 2) > size * 0.08) & (
        ((np.abs(x - size / 2) - size * 0.2) / (size * 0.12)) ** 2
        + ((y - size * 0.45) / (size * 0.2)) ** 2
        < 1
    )
    hu = np.full((size, size), -1000.0)
    hu[body] = 40
    hu[lungs] = -850
    hu[(x - size / 2) ** 2 + (y - size * 0.7 - index) ** 2 < (size * 0.06) ** 2] = 700
    return hu


def write_chest_series(
    folder: Path, slices: int, size: int, *, noise: float = 0.0, **attributes
) -> list[Path]:
    """Write ``slices`` chest slices of one new study, 1 mm apart from the head down."""
    folder.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    rng = np.random.default_rng(7)
    paths = []
    for index in range(slices):
        hu = chest(size, index)
        if noise:
            hu += rng.normal(0, noise, hu.shape)
        ds = ct_slice(
            hu,
            study=study,
            series=series,
            number=index + 1,
            ImagePositionPatient=[0, 0, float(-index)],
            **attributes,
        )
        paths.append(folder / f"ct{index:04d}.dcm")
        ds.save_as(paths[-1], enforce_file_format=True)
    return paths
