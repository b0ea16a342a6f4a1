"""Stream a STOW-RS ``multipart/related`` body into the spool folder, part by part.

Each ``application/dicom`` part is written straight to a spool file, its
preamble zeroed and its SHA-256 taken as it is written; other parts are
counted, not kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from python_multipart import MultipartParser
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header

from portal.errors import InvalidInput
from portal.studies.policy import IngestRejected
from portal.studies.spool import SpooledFile, SpoolWriter

READ_CHUNK = 1024 * 1024


@dataclass
class Part:
    """One body part; a DICOM one is in ``spooled`` or, when it is not DICOM, ``rejected``.

    ``too_large`` parts were cut short and are not kept.
    """

    content_type: str = ""
    size: int = 0
    too_large: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    spooled: SpooledFile | None = None
    rejected: str = ""  # why a DICOM part's content is not a DICOM file
    writer: SpoolWriter | None = field(default=None, repr=False)

    def discard(self) -> None:
        """Remove the part's spool file, if it has one."""
        if self.writer is not None:
            self.writer.discard()


class _Spooler:
    def __init__(self, folder: Path, max_part_bytes: int) -> None:
        self.folder, self.max_part_bytes = folder, max_part_bytes
        self.parts: list[Part] = []
        self._header_field = b""
        self._header_value = b""
        self._open = False

    def on_part_begin(self) -> None:
        self.parts.append(Part())
        self._open = True

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        name = self._header_field.decode("latin-1").strip().lower()
        self.parts[-1].headers[name] = self._header_value.decode("latin-1").strip()
        self._header_field = self._header_value = b""

    def on_headers_finished(self) -> None:
        part = self.parts[-1]
        part.content_type = parse_options_header(part.headers.get("content-type", ""))[0]
        if part.content_type == "application/dicom":
            part.writer = SpoolWriter(self.folder)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.parts[-1]
        part.size += end - start
        if part.size > self.max_part_bytes and not part.too_large:
            part.too_large = True
            part.discard()
        if part.writer is not None and not part.too_large:
            part.writer.write(memoryview(data)[start:end])

    def on_part_end(self) -> None:
        part, self._open = self.parts[-1], False
        if part.writer is None or part.too_large:
            return
        try:
            part.spooled = part.writer.close()
        except IngestRejected as exc:
            part.rejected = str(exc)

    def finish(self) -> None:
        """:raise InvalidInput: the body ended inside a part."""
        if self._open:
            raise InvalidInput("the multipart body ended in the middle of a part")

    def discard(self) -> None:
        for part in self.parts:
            part.discard()


def boundary_of(content_type: str) -> str:
    """:raise InvalidInput: not multipart/related with a boundary."""
    mimetype, options = parse_options_header(content_type)
    if mimetype != "multipart/related" or not options.get("boundary"):
        raise InvalidInput(
            'STOW-RS needs Content-Type: multipart/related; type="application/dicom"; boundary=...'
        )
    return options["boundary"]


def spool_parts(
    stream: BinaryIO,
    boundary: str,
    max_part_bytes: int,
    spool_dir: Path,
    max_body_bytes: int | None = None,
) -> list[Part]:
    """Parse ``stream`` and return its parts, the DICOM ones written to files in ``spool_dir``.

    The caller removes the files (:meth:`Part.discard`); if parsing fails, none is left.

    :param max_body_bytes: refuse the body once more than this has been read.
    :raise InvalidInput: the body is cut short.
    :raise RequestEntityTooLarge: the body is longer than ``max_body_bytes``.
    """
    spool_dir.mkdir(parents=True, exist_ok=True)
    spooler = _Spooler(spool_dir, max_part_bytes)
    parser = MultipartParser(
        boundary,
        {
            name: getattr(spooler, name)
            for name in (
                "on_part_begin",
                "on_header_field",
                "on_header_value",
                "on_header_end",
                "on_headers_finished",
                "on_part_data",
                "on_part_end",
            )
        },
    )
    left = max_body_bytes
    try:
        while chunk := stream.read(READ_CHUNK):
            if left is not None and (left := left - len(chunk)) < 0:
                raise RequestEntityTooLarge()
            parser.write(chunk)
        parser.finalize()
        spooler.finish()
    except BaseException:
        spooler.discard()
        raise
    return spooler.parts
