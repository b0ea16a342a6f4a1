"""Ingest one zip entry, with the bytes it really yields counted and capped.

A zip's size fields can lie; what is counted here is what decompression
actually produced, so the archive's total budget holds whatever they claim.
"""

from __future__ import annotations

import lzma
import zipfile
import zlib
from typing import BinaryIO

from portal.studies.pipeline import IngestResult, IngestStatus, Upload, ingest_stream
from portal.studies.policy import IngestLimits, IngestRejected, megabytes

# What reading a damaged entry raises, by compression method (bz2 raises OSError).
_DAMAGED_ENTRY_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    OSError,
    RuntimeError,
    NotImplementedError,
)


class CountingReader:
    """Wrap an entry stream: count what it yields, and refuse the entry if it is damaged."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        """Read like ``stream.read``; :raise IngestRejected: the entry's data is damaged."""
        try:
            data = self._stream.read(size)
        except _DAMAGED_ENTRY_ERRORS as exc:
            raise IngestRejected(f"the zip entry is damaged ({exc})") from exc
        self.count += len(data)
        return data


def ingest_entry(
    archive: zipfile.ZipFile,
    entry: zipfile.ZipInfo,
    source: str,
    owner_id: int,
    limits: IngestLimits,
    budget: int,
    *,
    deidentify_scope: str | None = None,
) -> tuple[IngestResult, int]:
    """Ingest one entry; return its result and how many bytes it really expanded to.

    :param budget: bytes the archive may still expand to before it is over its cap.
    :param deidentify_scope: de-identify the entry first (see :class:`Upload`).
    """
    if budget < limits.max_file_bytes:
        cap = budget
        too_big = (
            f"the zip expands past its {megabytes(limits.zip_max_total_bytes)} limit;"
            " its size headers understate what it holds"
        )
    else:
        cap = limits.max_file_bytes
        too_big = f"the file is larger than the {megabytes(limits.max_file_bytes)} limit"
    try:
        stream = archive.open(entry)
    except _DAMAGED_ENTRY_ERRORS as exc:
        return IngestResult(source, IngestStatus.REJECTED, f"the zip entry is damaged ({exc})"), 0
    with stream:
        reader = CountingReader(stream)
        upload = Upload(source, owner_id, limits, cap, too_big, None, deidentify_scope)
        result = ingest_stream(reader, upload)
    return result, reader.count
