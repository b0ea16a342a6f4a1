"""Copy uploads to the spool folder in bounded chunks, hashing and capping as they stream.

Nothing here holds more than one chunk of a file in memory.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from portal.studies.policy import IngestRejected, megabytes

PREAMBLE_LENGTH = 128
MAGIC = b"DICM"
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class SpooledFile:
    """A spooled DICOM file; its preamble is zeroed and ``sha256`` is over the stored bytes."""

    path: Path
    size: int
    sha256: str


def spool_dicom(stream: BinaryIO, spool_dir: Path, max_bytes: int, too_big: str) -> SpooledFile:
    """Copy a DICOM Part 10 stream to a new spool file with its 128-byte preamble zeroed.

    The preamble is free for any use, so a polyglot file (a DICOM that is also
    a valid executable or archive) keeps it harmless only once it is blanked.

    :param max_bytes: refuse the stream once more bytes than this have been read.
    :param too_big: the reason given when ``max_bytes`` is exceeded.
    :raise IngestRejected: no ``DICM`` marker, or over ``max_bytes``.
    """
    _check_magic(_read_exactly(stream, PREAMBLE_LENGTH + len(MAGIC)))
    fd, name = tempfile.mkstemp(dir=spool_dir, suffix=".dcm")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            size, digest = _copy_hashing(
                stream, out, bytes(PREAMBLE_LENGTH) + MAGIC, max_bytes, too_big
            )
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return SpooledFile(path, size, digest)


class SpoolWriter:
    """Write a DICOM file into the spool as its bytes arrive, zeroing and hashing on the way.

    What :func:`spool_dicom` does with a stream it reads, for data handed in
    pieces (a STOW-RS part, as the multipart parser finds it): the file is
    written once and never read back to be hashed.
    """

    def __init__(self, spool_dir: Path) -> None:
        fd, name = tempfile.mkstemp(dir=spool_dir, prefix="stow-", suffix=".dcm")
        self.path = Path(name)
        self.size = 0
        self._file = os.fdopen(fd, "wb")
        self._hasher = hashlib.sha256()
        self._head = b""  # the preamble and marker, held until they are all here

    def write(self, data: bytes | memoryview) -> None:
        """Append ``data``; the 128-byte preamble is written as zeros."""
        self.size += len(data)
        head_length = PREAMBLE_LENGTH + len(MAGIC)
        if len(self._head) < head_length:
            missing = head_length - len(self._head)
            self._head += bytes(data[:missing])
            data = data[missing:]
            if len(self._head) < head_length:
                return
            self._put(bytes(PREAMBLE_LENGTH) + self._head[PREAMBLE_LENGTH:])
        if data:
            self._put(data)

    def _put(self, data: bytes | memoryview) -> None:
        self._hasher.update(data)
        self._file.write(data)

    def close(self) -> SpooledFile:
        """Close the file and describe it.

        :raise IngestRejected: no ``DICM`` marker (the file is left for the caller to remove).
        """
        self._file.close()
        _check_magic(self._head)
        return SpooledFile(self.path, self.size, self._hasher.hexdigest())

    def discard(self) -> None:
        """Close the file and remove it."""
        self._file.close()
        self.path.unlink(missing_ok=True)


def _check_magic(head: bytes) -> None:
    """:raise IngestRejected: ``head`` (the first 132 bytes) has no ``DICM`` after the preamble."""
    if len(head) < PREAMBLE_LENGTH + len(MAGIC) or head[PREAMBLE_LENGTH:] != MAGIC:
        raise IngestRejected(
            "not a DICOM file: the 'DICM' marker after the 128-byte preamble is missing"
        )


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    """Read ``size`` bytes, or fewer only at the end of the stream."""
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _copy_hashing(
    stream: BinaryIO, out: BinaryIO, head: bytes, max_bytes: int, too_big: str
) -> tuple[int, str]:
    """Write ``head`` then the rest of ``stream`` to ``out``; return size and SHA-256."""
    hasher = hashlib.sha256(head)
    out.write(head)
    size = len(head)
    while chunk := stream.read(CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise IngestRejected(too_big)
        hasher.update(chunk)
        out.write(chunk)
    return size, hasher.hexdigest()


def inflate_capped(source: BinaryIO, target: BinaryIO, max_bytes: int) -> int:
    """Inflate the raw deflate stream in ``source`` into ``target``; return its size.

    This is what pydicom would do in one ``zlib.decompress`` call, bounded:
    output comes out a chunk at a time and stops at ``max_bytes``.

    :raise IngestRejected: the data inflates past ``max_bytes``, or is corrupt or cut short.
    """
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    size = 0
    try:
        while not inflater.eof and (data := source.read(CHUNK)):
            while data and not inflater.eof:
                size += _write_capped(target, inflater.decompress(data, CHUNK), size, max_bytes)
                data = inflater.unconsumed_tail
        size += _write_capped(target, inflater.flush(), size, max_bytes)
    except zlib.error as exc:
        raise IngestRejected(f"the deflated data set is corrupt ({exc})") from exc
    if not inflater.eof:
        raise IngestRejected("the deflated data set is cut short (truncated file)")
    return size


def _write_capped(target: BinaryIO, data: bytes, written: int, max_bytes: int) -> int:
    if written + len(data) > max_bytes:
        raise IngestRejected(
            f"the deflated data set inflates past the {megabytes(max_bytes)} limit"
        )
    target.write(data)
    return len(data)
