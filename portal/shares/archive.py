"""Stream one study's DICOM files from the blob store as a zip, without holding it whole."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator

from sqlalchemy import select

from portal.extensions import db
from portal.storage import get_storage
from portal.studies.models import Instance, Series

CHUNK = 1024 * 1024


def study_members(study_id: int) -> list[tuple[str, str]]:
    """Return ``(name in the zip, storage key)`` for each file of the study, in series order.

    Names are ``S001/I00001.dcm``: positions, with no patient data in them.
    """
    rows = db.session.execute(
        select(Series.id, Instance.storage_key)
        .join(Instance, Instance.series_id == Series.id)
        .where(Series.study_id == study_id)
        .order_by(Series.id, Instance.instance_number, Instance.id)
    ).all()
    series_positions: dict[int, int] = {}
    members, counts = [], {}
    for series_id, key in rows:
        series = series_positions.setdefault(series_id, len(series_positions) + 1)
        counts[series] = counts.get(series, 0) + 1
        members.append((f"S{series:03d}/I{counts[series]:05d}.dcm", key))
    return members


class _Pipe:
    """A write-only, unseekable file whose bytes wait for the next :meth:`drain`."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def drain(self) -> Iterator[bytes]:
        if self.parts:
            yield b"".join(self.parts)
            self.parts = []


def zip_stream(members: list[tuple[str, str]]) -> Iterator[bytes]:
    """Yield a zip of the blobs in ``members`` piece by piece (deflated, ZIP64 when needed)."""
    pipe = _Pipe()
    storage = get_storage()
    with zipfile.ZipFile(pipe, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, key in members:
            with storage.open(key) as blob, archive.open(name, "w", force_zip64=True) as entry:
                while chunk := blob.read(CHUNK):
                    entry.write(chunk)
                    yield from pipe.drain()
            yield from pipe.drain()
    yield from pipe.drain()
