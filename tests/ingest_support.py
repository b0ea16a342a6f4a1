"""Build DICOM files and zip archives, good and hostile, for the ingest tests."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
from sqlalchemy import delete, func, select

from portal.auth import operations
from portal.auth.models import User
from portal.extensions import db
from portal.storage import get_storage
from portal.studies.blobkeys import INSTANCE_PREFIX
from portal.studies.models import Instance, Patient, Series, Study

STUDY_UID = "1.2.826.0.1.3680043.8.498.1"


def app_with_owner(make_app, tmp_path: Path, **config) -> tuple:
    """Build an app with ``config`` (spooling under ``tmp_path``) and an account in it.

    The conftest ``create_user`` writes to the ``app`` fixture's database, not to
    a second app built with ``make_app``; this makes the owner where it is used.
    """
    app = make_app(SPOOL_DIR=str(tmp_path / "spool"), **config)
    with app.app_context():
        user: User = operations.create_user(
            "owner@example.org", "Owner", "patient", "long enough password"
        )
        db.session.commit()
        db.session.refresh(user)
        db.session.expunge(user)
    return app, user


def make_dataset(**attributes) -> Dataset:
    """Return a small, valid 8 x 8 16-bit CT-like image; ``attributes`` override or add."""
    ds = Dataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = STUDY_UID
    ds.SeriesInstanceUID = STUDY_UID + ".1"
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "MRN-0001"
    ds.PatientBirthDate = "19700131"
    ds.PatientSex = "F"
    ds.StudyDate = "20240229"
    ds.StudyTime = "101500"
    ds.StudyDescription = "CT chest"
    ds.AccessionNumber = "ACC42"
    ds.ReferringPhysicianName = "Who^Doctor"
    ds.Modality = "CT"
    ds.BodyPartExamined = "CHEST"
    ds.SeriesDescription = "Axial"
    ds.SeriesNumber = 2
    ds.InstanceNumber = 7
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(range(128))
    for keyword, value in attributes.items():
        if value is None:
            ds.pop(keyword, None)
        else:
            setattr(ds, keyword, value)
    return ds


def write_dicom(
    path: Path,
    ds: Dataset | None = None,
    *,
    transfer_syntax: str = ExplicitVRLittleEndian,
    preamble: bytes | None = None,
    **attributes,
) -> Path:
    """Write ``ds`` (or a :func:`make_dataset`) as a DICOM Part 10 file at ``path``."""
    ds = ds if ds is not None else make_dataset(**attributes)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", SecondaryCaptureImageStorage)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", generate_uid())
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    ds.preamble = preamble
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def element_offset(data: bytes, tag: tuple[int, int], vr: bytes) -> int:
    """Return where an explicit VR little endian element with ``tag`` and ``vr`` starts."""
    return data.index(struct.pack("<HH", *tag) + vr)


def make_zip(path: Path, entries: dict[str, bytes]) -> Path:
    """Write a deflated zip holding ``entries`` (name -> content)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return path


def patch_zip_entry(
    path: Path, name: str, *, flag_bits: int | None = None, file_size: int | None = None
) -> None:
    """Rewrite an entry's general-purpose flags or uncompressed size in both its headers.

    Python's zipfile cannot write encrypted or lying entries; this forges them.
    """
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
    local, central = info.header_offset, _central_record(data, name.encode())
    for header, flag_at, size_at in ((local, 6, 22), (central, 8, 24)):
        if flag_bits is not None:
            struct.pack_into("<H", data, header + flag_at, flag_bits)
        if file_size is not None:
            struct.pack_into("<L", data, header + size_at, file_size)
    path.write_bytes(bytes(data))


def _central_record(data: bytearray, name: bytes) -> int:
    """Return the offset of the central directory record for entry ``name``."""
    offset = 0
    while (offset := data.find(b"PK\x01\x02", offset)) != -1:
        name_length = struct.unpack_from("<H", data, offset + 28)[0]
        if data[offset + 46 : offset + 46 + name_length] == name:
            return offset
        offset += 4
    raise LookupError(name)


def index_counts() -> dict[str, int]:
    """Return how many patient, study, series and instance rows there are."""
    return {
        model.__tablename__: db.session.scalar(select(func.count()).select_from(model))
        for model in (Patient, Study, Series, Instance)
    }


def stored_keys() -> list[str]:
    """Return every instance blob key in the current app's store."""
    return sorted(get_storage().iter_keys(INSTANCE_PREFIX))


def clear_index() -> None:
    """Delete every index row and instance blob (for tests sharing one app)."""
    storage = get_storage()
    for key in stored_keys():
        storage.delete(key)
    for model in (Instance, Series, Study, Patient):
        db.session.execute(delete(model))
    db.session.commit()
