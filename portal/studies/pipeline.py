"""The steps one file goes through: spool, check, then deduplicate, store the blob, index it.

Checking happens here; deduplicating, storing and indexing in
:mod:`portal.studies.batch`, which writes the blob first and commits the
index row after it, so a crash at any moment leaves at worst a blob no row
points to (``storage verify`` reports it), never a row without its blob.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import BinaryIO

from portal.deid.files import deidentify_file
from portal.deid.mapper import DeidMapper
from portal.extensions import db
from portal.studies.batch import store_files
from portal.studies.headers import read_header
from portal.studies.policy import IngestLimits, IngestRejected, IngestSkipped
from portal.studies.results import (
    CONFLICT,
    DUPLICATE,
    CheckedFile,
    IngestResult,
    IngestStatus,
)
from portal.studies.spool import SpooledFile, spool_dicom

__all__ = [
    "BURNED_IN_ANNOTATION",
    "CONFLICT",
    "DUPLICATE",
    "CheckedFile",
    "IngestResult",
    "IngestStatus",
    "Upload",
    "check_spooled",
    "ingest_spooled",
    "ingest_stream",
]

BURNED_IN_ANNOTATION = (
    "de-identified, but the image may show patient details drawn into its pixels"
    " (burned-in annotation), which de-identification does not remove"
)


@dataclass(frozen=True)
class Upload:
    """Who sends a file and what they expect of it."""

    source: str
    owner_id: int
    limits: IngestLimits
    max_bytes: int  # refuse the file once more than this many bytes were read
    too_big: str  # the reason given then
    expected_study_uid: str | None = None
    deidentify_scope: str | None = None  # de-identify before storing, mapping within this scope


def ingest_stream(stream: BinaryIO, upload: Upload) -> IngestResult:
    """Ingest the DICOM file read from ``stream``; commit its index rows.

    :raise StorageError: the blob store failed (the index is left untouched).
    """
    try:
        spooled = spool_dicom(stream, upload.limits.spool_dir, upload.max_bytes, upload.too_big)
    except IngestRejected as exc:
        return IngestResult(upload.source, IngestStatus.REJECTED, str(exc))
    try:
        return ingest_spooled(spooled, upload)
    finally:
        spooled.path.unlink(missing_ok=True)


def check_spooled(spooled: SpooledFile, upload: Upload) -> CheckedFile | IngestResult:
    """Read and check the header of a spooled file; answer a result if it cannot be stored."""
    try:
        header = read_header(spooled.path, upload.limits)
    except IngestSkipped as exc:
        return IngestResult(upload.source, IngestStatus.SKIPPED, str(exc))
    except IngestRejected as exc:
        return IngestResult(upload.source, IngestStatus.REJECTED, str(exc))
    checked = CheckedFile(upload.source, spooled, header)
    expected = upload.expected_study_uid
    if expected is not None and header.study_instance_uid != expected:
        return checked.result(
            IngestStatus.WRONG_STUDY, "the file belongs to another study than the one named"
        )
    return checked


def ingest_spooled(spooled: SpooledFile, upload: Upload) -> IngestResult:
    """Ingest a spooled file; commit its index rows.

    The file may be moved into the blob store; the caller removes whatever is left of it.
    """
    checked = check_spooled(spooled, upload)
    if isinstance(checked, IngestResult):
        return checked
    if upload.deidentify_scope is not None:
        return _ingest_deidentified(spooled, upload)
    return store_files([checked], upload.owner_id)[0]


def _ingest_deidentified(spooled: SpooledFile, upload: Upload) -> IngestResult:
    """Store a de-identified copy of the checked file instead of it; commit its mapping first.

    Only the copy is hashed, stored and indexed, so no original identifier
    reaches the blob store or the index; deduplication sees the new UIDs.
    """
    assert upload.deidentify_scope is not None
    mapper = DeidMapper(upload.deidentify_scope, upload.owner_id)
    limits = upload.limits
    try:
        copy = deidentify_file(spooled.path, mapper, limits.spool_dir, limits.max_deid_bytes)
    except IngestRejected as exc:
        db.session.rollback()
        return IngestResult(upload.source, IngestStatus.REJECTED, str(exc))
    except BaseException:
        db.session.rollback()
        raise
    db.session.commit()  # the mapping is durable before any blob or row refers to it
    try:
        result = _ingest_copy(copy.spooled, upload)
    finally:
        copy.spooled.path.unlink(missing_ok=True)
    return replace(result, warning=BURNED_IN_ANNOTATION) if copy.burned_in_annotation else result


def _ingest_copy(spooled: SpooledFile, upload: Upload) -> IngestResult:
    try:
        header = read_header(spooled.path, upload.limits)
    except (IngestRejected, IngestSkipped) as exc:
        reason = f"the de-identified copy is unreadable: {exc}"
        return IngestResult(upload.source, IngestStatus.REJECTED, reason)
    return store_files([CheckedFile(upload.source, spooled, header)], upload.owner_id)[0]
