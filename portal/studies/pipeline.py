"""The steps one file goes through: spool, check, deduplicate, store the blob, index it.

The blob is written first and the index row committed after it, so a crash
at any moment leaves at worst a blob no row points to (``storage verify``
reports it), never a row without its blob. When the commit fails, the blob
is removed again.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, replace
from typing import BinaryIO

from sqlalchemy.exc import IntegrityError

from portal.deid.files import deidentify_file
from portal.deid.mapper import DeidMapper
from portal.errors import StorageError
from portal.extensions import db
from portal.storage import get_storage
from portal.studies import index
from portal.studies.blobkeys import new_instance_key
from portal.studies.headers import InstanceHeader, read_header
from portal.studies.models import Instance
from portal.studies.policy import IngestLimits, IngestRejected, IngestSkipped
from portal.studies.spool import SpooledFile, spool_dicom

logger = logging.getLogger(__name__)

DUPLICATE = "already stored: same SOP Instance UID and identical content"
CONFLICT = (
    "a different file with this SOP Instance UID is already stored;"
    " the first copy was kept and this one was not stored"
)
BURNED_IN_ANNOTATION = (
    "de-identified, but the image may show patient details drawn into its pixels"
    " (burned-in annotation), which de-identification does not remove"
)


class IngestStatus(enum.StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"  # same SOP Instance UID, same bytes: nothing to do
    CONFLICT = "conflict"  # same SOP Instance UID, other bytes: the first copy is kept
    REJECTED = "rejected"  # unfit to store; ``reason`` says why
    SKIPPED = "skipped"  # fine, but not an instance (a DICOMDIR)
    WRONG_STUDY = "wrong_study"  # not of the study the caller named (STOW-RS to one study)


@dataclass(frozen=True)
class IngestResult:
    """What became of one file; ``source`` is its name as the uploader gave it."""

    source: str
    status: IngestStatus
    reason: str = ""
    sop_class_uid: str | None = None
    sop_instance_uid: str | None = None
    series_instance_uid: str | None = None
    study_instance_uid: str | None = None
    warning: str = ""  # stored, but something the uploader should know (BURNED_IN_ANNOTATION)

    @classmethod
    def about(
        cls, header: InstanceHeader, source: str, status: IngestStatus, reason: str = ""
    ) -> IngestResult:
        """Return a result that names the instance ``header`` describes."""
        return cls(
            source,
            status,
            reason,
            header.sop_class_uid,
            header.sop_instance_uid,
            header.series_instance_uid,
            header.study_instance_uid,
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
        return _ingest_spooled(spooled, upload)
    finally:
        spooled.path.unlink(missing_ok=True)


def _ingest_spooled(spooled: SpooledFile, upload: Upload) -> IngestResult:
    source, owner_id = upload.source, upload.owner_id
    try:
        header = read_header(spooled.path, upload.limits)
    except IngestSkipped as exc:
        return IngestResult(source, IngestStatus.SKIPPED, str(exc))
    except IngestRejected as exc:
        return IngestResult(source, IngestStatus.REJECTED, str(exc))
    expected = upload.expected_study_uid
    if expected is not None and header.study_instance_uid != expected:
        return IngestResult.about(
            header,
            source,
            IngestStatus.WRONG_STUDY,
            "the file belongs to another study than the one named",
        )
    if upload.deidentify_scope is not None:
        return _ingest_deidentified(spooled, upload)
    known = _known_result(header, spooled, source, owner_id)
    return known if known is not None else _store(spooled, header, source, owner_id)


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
    known = _known_result(header, spooled, upload.source, upload.owner_id)
    if known is not None:
        return known
    return _store(spooled, header, upload.source, upload.owner_id)


def _known_result(
    header: InstanceHeader, spooled: SpooledFile, source: str, owner_id: int
) -> IngestResult | None:
    """Answer for an already stored SOP Instance UID, or ``None`` if it is new."""
    existing = index.find_instance(header.sop_instance_uid)
    result = None if existing is None else _compare(existing, header, spooled, source, owner_id)
    db.session.commit()  # end the read; no lock is held while the blob uploads
    return result


def _compare(
    existing: Instance, header: InstanceHeader, spooled: SpooledFile, source: str, owner_id: int
) -> IngestResult:
    if existing.series.study.owner_id != owner_id:
        return IngestResult.about(header, source, IngestStatus.REJECTED, index.FOREIGN_STUDY)
    if existing.sha256 == spooled.sha256:
        return IngestResult.about(header, source, IngestStatus.DUPLICATE, DUPLICATE)
    return IngestResult.about(header, source, IngestStatus.CONFLICT, CONFLICT)


def _store(
    spooled: SpooledFile, header: InstanceHeader, source: str, owner_id: int
) -> IngestResult:
    """Put the blob, then commit its index rows; undo the blob if the commit fails."""
    key = new_instance_key()
    get_storage().put_file(key, spooled.path)
    try:
        index.add_instance(header, owner_id, spooled, key)
        db.session.commit()
    except IngestRejected as exc:
        _undo(key)
        return IngestResult.about(header, source, IngestStatus.REJECTED, str(exc))
    except IntegrityError:
        _undo(key)  # lost a race for this SOP Instance UID: answer as if it came second
        known = _known_result(header, spooled, source, owner_id)
        if known is None:
            raise
        return known
    except BaseException:
        _undo(key)
        raise
    return IngestResult.about(header, source, IngestStatus.ACCEPTED)


def _undo(key: str) -> None:
    """Roll the index back and remove the blob stored under ``key``."""
    db.session.rollback()
    try:
        get_storage().delete(key)
    except StorageError:
        logger.warning("ingest: could not remove blob %s; storage verify will list it", key)
