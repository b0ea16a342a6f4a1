"""Stream a ``multipart/related`` request body into temporary files, part by part."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from python_multipart import MultipartParser
from werkzeug.http import parse_options_header

from portal.errors import InvalidInput

READ_CHUNK = 1024 * 1024


@dataclass
class Part:
    """One body part spooled to ``path``; ``too_large`` parts were cut short."""

    path: Path
    content_type: str = ""
    size: int = 0
    too_large: bool = False
    headers: dict[str, str] = field(default_factory=dict)


class _Spooler:
    def __init__(self, folder: Path, max_part_bytes: int) -> None:
        self.folder, self.max_part_bytes = folder, max_part_bytes
        self.parts: list[Part] = []
        self._file: BinaryIO | None = None
        self._header_field = b""
        self._header_value = b""

    def on_part_begin(self) -> None:
        part = Part(path=self.folder / f"part-{len(self.parts):06d}")
        self.parts.append(part)
        self._file = open(part.path, "wb")  # noqa: SIM115 - closed in on_part_end

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

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.parts[-1]
        part.size += end - start
        if part.size > self.max_part_bytes:
            part.too_large = True
            return
        self._file.write(data[start:end])

    def on_part_end(self) -> None:
        self._file.close()
        self._file = None

    def finish(self) -> None:
        """:raise InvalidInput: the body ended inside a part."""
        if self._file is not None:
            self._file.close()
            raise InvalidInput("the multipart body ended in the middle of a part")


def boundary_of(content_type: str) -> str:
    """:raise InvalidInput: not multipart/related with a boundary."""
    mimetype, options = parse_options_header(content_type)
    if mimetype != "multipart/related" or not options.get("boundary"):
        raise InvalidInput(
            'STOW-RS needs Content-Type: multipart/related; type="application/dicom"; boundary=...'
        )
    return options["boundary"]


def spool_parts(
    stream: BinaryIO, boundary: str, max_part_bytes: int, spool_dir: Path
) -> Iterator[Part]:
    """Parse ``stream`` and yield its parts, each stored in a file under ``spool_dir``."""
    spool_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="stow-", dir=spool_dir) as folder:
        spooler = _Spooler(Path(folder), max_part_bytes)
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
        while chunk := stream.read(READ_CHUNK):
            parser.write(chunk)
        parser.finalize()
        spooler.finish()
        yield from spooler.parts
