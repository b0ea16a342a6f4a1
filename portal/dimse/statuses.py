"""C-STORE response statuses for ingest results (PS3.4 Annex B.2.3, PS3.7 Annex C)."""

from __future__ import annotations

from pydicom.dataset import Dataset

from portal.studies.index import FOREIGN_STUDY
from portal.studies.ingest import IngestResult, IngestStatus

SUCCESS = 0x0000
# PS3.7 C.5: general failures any DIMSE service may answer with.
PROCESSING_FAILURE = 0x0110
DUPLICATE_SOP_INSTANCE = 0x0111
NOT_AUTHORIZED = 0x0124
# PS3.4 B.2.3: storage-specific failures.
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000

ERROR_COMMENT_LENGTH = 64  # Error Comment (0000,0902) is LO

_CODES = {
    IngestStatus.ACCEPTED: SUCCESS,
    IngestStatus.DUPLICATE: SUCCESS,
    IngestStatus.CONFLICT: DUPLICATE_SOP_INSTANCE,
    IngestStatus.REJECTED: CANNOT_UNDERSTAND,
    IngestStatus.SKIPPED: CANNOT_UNDERSTAND,  # a DICOMDIR: nothing to store
    IngestStatus.WRONG_STUDY: CANNOT_UNDERSTAND,
}


def store_status(result: IngestResult) -> Dataset:
    """Return the C-STORE response status for ``result``, with its reason on failure.

    The reasons ingest gives are PHI-free sentences, so they may travel back
    to the sender as the Error Comment.
    """
    code = _CODES[result.status]
    if result.status is IngestStatus.REJECTED and result.reason == FOREIGN_STUDY:
        code = NOT_AUTHORIZED
    return status(code, result.reason if code != SUCCESS else "")


def status(code: int, comment: str = "") -> Dataset:
    """Return a status dataset; ``comment`` is cut to fit the Error Comment element."""
    answer = Dataset()
    answer.Status = code
    if comment:
        answer.ErrorComment = _error_comment(comment)
    return answer


def _error_comment(text: str) -> str:
    """Fit ``text`` to an LO value: printable ASCII, no backslash, at most 64 characters."""
    printable = "".join(c if " " <= c <= "~" and c != "\\" else "?" for c in text)
    if len(printable) <= ERROR_COMMENT_LENGTH:
        return printable
    return printable[: ERROR_COMMENT_LENGTH - 3].rstrip() + "..."
