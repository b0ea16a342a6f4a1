"""What ingest answers for each file, and what it hands from checking to storing."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from portal.studies.headers import InstanceHeader
from portal.studies.spool import SpooledFile

DUPLICATE = "already stored: same SOP Instance UID and identical content"
CONFLICT = (
    "a different file with this SOP Instance UID is already stored;"
    " the first copy was kept and this one was not stored"
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
class CheckedFile:
    """A spooled file whose header passed every check: ready to deduplicate and store."""

    source: str
    spooled: SpooledFile
    header: InstanceHeader

    def result(self, status: IngestStatus, reason: str = "") -> IngestResult:
        """Return the result ``status`` gives this file."""
        return IngestResult.about(self.header, self.source, status, reason)
