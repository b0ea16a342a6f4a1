"""Turn a spooled DICOM file into the plain facts the study index stores.

Every pydicom call on untrusted bytes happens inside :func:`read_header`,
which answers with :class:`IngestRejected` or :class:`IngestSkipped` and never
lets a parser error escape.
"""

from __future__ import annotations

import logging
import re
import threading
import warnings
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import BinaryIO

from pydicom import config as pydicom_config
from pydicom.datadict import dictionary_description
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import Tag
from pydicom.uid import MediaStorageDirectoryStorage

from portal.studies import models
from portal.studies.dicomfile import open_dicom, read_file_meta
from portal.studies.policy import IngestLimits, IngestRejected, IngestSkipped

logger = logging.getLogger(__name__)

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_INT32 = 2**31 - 1
# pydicom reports through process-wide warnings and settings; one parse at a time
# keeps one thread's warning filters from leaking into another's.
PARSE_LOCK = threading.Lock()


@dataclass(frozen=True)
class InstanceHeader:
    """What the index needs from one file; text is stripped and cut to column size."""

    transfer_syntax_uid: str
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    patient_id: str
    patient_name: str
    patient_birth_date: date | None
    patient_sex: str
    study_date: date | None
    study_time: str
    study_description: str
    accession_number: str
    referring_physician: str
    modality: str
    body_part: str
    series_description: str
    series_number: int | None
    instance_number: int | None
    rows: int | None
    columns: int | None
    number_of_frames: int | None


def read_header(path: Path, limits: IngestLimits) -> InstanceHeader:
    """Read and check the header of the spooled file at ``path``.

    :raise IngestSkipped: the file is a DICOMDIR, not an instance.
    :raise IngestRejected: anything that makes the file unfit to store; the
        message says what, without patient data.
    """
    with PARSE_LOCK, warnings.catch_warnings(), pydicom_config.disable_value_validation():
        # pydicom warns about oddities it reads past; ingest judges files on its own checks.
        warnings.simplefilter("ignore")
        try:
            with open(path, "rb") as fp:
                return _header_of(fp, limits)
        except (IngestRejected, IngestSkipped):
            raise
        except Exception as exc:  # untrusted bytes: pydicom may raise any error
            logger.info("ingest: header unreadable: %s", exc.__class__.__name__)
            raise IngestRejected(
                f"the DICOM header is damaged or truncated ({exc.__class__.__name__})"
            ) from exc


def _header_of(fp: BinaryIO, limits: IngestLimits) -> InstanceHeader:
    meta, start = read_file_meta(fp)
    if meta.get("MediaStorageSOPClassUID") == MediaStorageDirectoryStorage:
        raise IngestSkipped(
            "DICOMDIR: a media index, not an image; the files it lists are ingested on their own"
        )
    transfer_syntax = _uid(meta, "TransferSyntaxUID")
    if transfer_syntax is None:
        raise IngestRejected("the file meta information has no valid Transfer Syntax UID")
    dataset = open_dicom(fp, meta, start, limits)
    _check_pixel_count(dataset, limits)
    return _extract(dataset, transfer_syntax)


def _extract(ds: Dataset, transfer_syntax: str) -> InstanceHeader:
    uids = {
        keyword: _required_uid(ds, keyword)
        for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
    }
    return InstanceHeader(
        transfer_syntax_uid=transfer_syntax,
        sop_class_uid=uids["SOPClassUID"],
        sop_instance_uid=uids["SOPInstanceUID"],
        study_instance_uid=uids["StudyInstanceUID"],
        series_instance_uid=uids["SeriesInstanceUID"],
        patient_id=_text(ds, "PatientID", models.TEXT_LENGTH),
        patient_name=_text(ds, "PatientName", models.PERSON_NAME_LENGTH),
        patient_birth_date=_date(ds, "PatientBirthDate"),
        patient_sex=_text(ds, "PatientSex", 16),
        study_date=_date(ds, "StudyDate"),
        study_time=_text(ds, "StudyTime", 32),
        study_description=_text(ds, "StudyDescription", models.TEXT_LENGTH),
        accession_number=_text(ds, "AccessionNumber", 64),
        referring_physician=_text(ds, "ReferringPhysicianName", models.PERSON_NAME_LENGTH),
        modality=_text(ds, "Modality", 16),
        body_part=_text(ds, "BodyPartExamined", 64),
        series_description=_text(ds, "SeriesDescription", models.TEXT_LENGTH),
        series_number=_int(ds, "SeriesNumber"),
        instance_number=_int(ds, "InstanceNumber"),
        rows=_int(ds, "Rows"),
        columns=_int(ds, "Columns"),
        number_of_frames=_int(ds, "NumberOfFrames"),
    )


def _check_pixel_count(ds: Dataset, limits: IngestLimits) -> None:
    """:raise IngestRejected: rows x columns x frames x samples per pixel is over the cap."""
    rows, columns = _number(ds, "Rows"), _number(ds, "Columns")
    if rows is None or columns is None:
        return
    frames = max(_number(ds, "NumberOfFrames") or 1, 1)
    samples = max(_number(ds, "SamplesPerPixel") or 1, 1)
    count = rows * columns * frames * samples
    if count > limits.max_pixels:
        raise IngestRejected(
            f"the image is too large: {rows} x {columns} pixels x {frames} frames"
            f" x {samples} samples = {count} values, over the {limits.max_pixels} limit"
        )


def _text(ds: Dataset, keyword: str, limit: int) -> str:
    """Return an attribute as clean text ("" when absent), cut to ``limit`` characters."""
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, MultiValue):
        value = "\\".join(str(item) for item in value)
    return str(value).replace("\x00", "").strip()[:limit]


def _uid(ds: Dataset, keyword: str) -> str | None:
    """Return a UID attribute if it is a well-formed UID (digits and dots, 64 at most)."""
    value = _text(ds, keyword, 100)
    return value if len(value) <= models.UID_LENGTH and _UID.match(value) else None


def _required_uid(ds: Dataset, keyword: str) -> str:
    uid = _uid(ds, keyword)
    if uid is None:
        state = "is not a valid UID" if keyword in ds else "is missing"
        raise IngestRejected(f"{dictionary_description(keyword)} {Tag(keyword)} {state}")
    return uid


def _number(ds: Dataset, keyword: str) -> int | None:
    """Return an integer attribute, or ``None`` when absent or malformed."""
    try:
        return int(ds.get(keyword))
    except (TypeError, ValueError, OverflowError):
        return None


def _int(ds: Dataset, keyword: str) -> int | None:
    """Return an integer attribute that fits a database integer column, else ``None``."""
    number = _number(ds, keyword)
    return number if number is not None and -_INT32 <= number <= _INT32 else None


def _date(ds: Dataset, keyword: str) -> date | None:
    """Return a DA attribute as a date, or ``None`` when absent or malformed."""
    text = _text(ds, keyword, 8)
    try:
        return datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        return None
