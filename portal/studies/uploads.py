"""Resumable, chunked browser uploads (a small tus-like protocol) that end in the one ingest path.

An upload lives in ``<SPOOL_DIR>/uploads/<user id>/<upload id>/``: ``data``
holds the bytes received so far, appended chunk by chunk, and ``state.json``
what was declared and, once the last byte is in, the ingest results. The
offset is the size of ``data``: what is on disk is what the server has.
Folders, audit rows and log lines name uploads by id only, since file names
can hold patient data. Nothing here reads ``flask.request``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from portal import clock
from portal.audit.operations import record
from portal.auth.models import User
from portal.errors import Conflict, InvalidInput, NotFound
from portal.extensions import db
from portal.studies.ingest import IngestResult, ingest_file, ingest_zip
from portal.studies.policy import MB, megabytes

logger = logging.getLogger(__name__)

CHUNK_SIZE = 8 * MB
STALE_AFTER = timedelta(days=1)
_COPY_BLOCK = MB
_DATA = "data"  # the spooled bytes' file name, and so the prefix of every ingest result
_ID = re.compile(r"^[0-9a-f]{32}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_GONE = "No such upload. It may have been cancelled or expired."


class UploadTooLarge(InvalidInput):
    """The declared size, or a chunk, is over the configured cap."""

    status_code = 413
    title = "Too large"


class OffsetMismatch(Conflict):
    """A chunk was sent for another offset than the server's; ``offset`` says where to go on."""

    def __init__(self, offset: int) -> None:
        super().__init__(f"The server holds {offset} bytes of this upload; send from there.")
        self.offset = offset


class UploadBusy(Conflict):
    """Another request is writing to (or ingesting) this upload right now."""

    status_code = 423
    title = "Busy"


@dataclass(frozen=True)
class UploadSettings:
    """Where uploads are spooled and how big they may be, from the app config."""

    root: Path
    chunk_size: int
    max_file_bytes: int
    max_zip_bytes: int

    @classmethod
    def from_config(cls, config: Mapping) -> UploadSettings:
        return cls(
            root=Path(config["SPOOL_DIR"]) / "uploads",
            chunk_size=config.get("UPLOAD_CHUNK_BYTES", CHUNK_SIZE),
            max_file_bytes=config["INGEST_MAX_FILE_MB"] * MB,
            max_zip_bytes=config["INGEST_ZIP_MAX_TOTAL_MB"] * MB,
        )


@dataclass
class ChunkedUpload:
    """One file on its way in; ``results`` is set once it has been ingested."""

    id: str
    owner_id: int
    source: str  # the name the uploader gave; shown back to them, never logged
    size: int
    kind: str  # "file" or "zip"
    created_at: str
    results: list[dict] | None = None
    folder: Path | None = None

    @property
    def data_path(self) -> Path:
        return self.folder / _DATA

    @property
    def done(self) -> bool:
        return self.results is not None

    @property
    def offset(self) -> int:
        return self.size if self.done else self.data_path.stat().st_size

    def save(self) -> None:
        """Write ``state.json`` atomically."""
        state = {key: value for key, value in asdict(self).items() if key != "folder"}
        temporary = self.folder / "state.json.tmp"
        temporary.write_text(json.dumps(state))
        os.replace(temporary, self.folder / "state.json")

    def as_json(self, settings: UploadSettings) -> dict:
        """Return what the protocol answers about this upload."""
        answer = {
            "id": self.id,
            "offset": self.offset,
            "size": self.size,
            "chunk_size": settings.chunk_size,
            "done": self.done,
        }
        if self.done:
            answer["results"] = self.results
        return answer


def start_upload(
    settings: UploadSettings, owner: User, name: object, relative_path: object, size: object
) -> ChunkedUpload:
    """Declare a new upload of ``size`` bytes for ``owner``; sweep stale ones first.

    :param name: the file's name; a name ending in ``.zip`` makes a zip upload.
    :param relative_path: its path within a picked folder, if any (shown in results).
    :raise InvalidInput: a field is missing or malformed.
    :raise UploadTooLarge: ``size`` is over the cap for a file or a zip.
    """
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("Give the file's name.")
    if relative_path is not None and not isinstance(relative_path, str):
        raise InvalidInput("relative_path must be text.")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidInput("Give the file's size in bytes, a whole number.")
    kind = "zip" if name.lower().endswith(".zip") else "file"
    cap = settings.max_zip_bytes if kind == "zip" else settings.max_file_bytes
    if size > cap:
        raise UploadTooLarge(
            f"This {'zip' if kind == 'zip' else 'file'} is {megabytes(size)};"
            f" the limit is {megabytes(cap)}."
        )
    sweep_stale_uploads(settings)
    upload = ChunkedUpload(
        id=uuid.uuid4().hex,
        owner_id=owner.id,
        source=_clean_source(relative_path or name),
        size=size,
        kind=kind,
        created_at=clock.now().isoformat(),
    )
    upload.folder = settings.root / str(owner.id) / upload.id
    upload.folder.mkdir(parents=True)
    upload.data_path.touch()
    upload.save()
    logger.info("upload %s started by user %s: %s bytes", upload.id, owner.id, size)
    return upload


def find_upload(settings: UploadSettings, owner_id: int, upload_id: str) -> ChunkedUpload:
    """Return ``owner_id``'s upload ``upload_id``.

    :raise NotFound: no such upload, or it belongs to someone else (admins included).
    """
    if not _ID.match(upload_id):
        raise NotFound(_GONE)
    folder = settings.root / str(owner_id) / upload_id
    try:
        state = json.loads((folder / "state.json").read_text())
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(_GONE) from None
    return ChunkedUpload(**state, folder=folder)


def append_chunk(
    settings: UploadSettings,
    owner: User,
    upload_id: str,
    offset: int,
    stream: BinaryIO,
    length: int,
) -> ChunkedUpload:
    """Append ``length`` bytes from ``stream`` at ``offset``; ingest once the file is whole.

    The bytes go to disk as they arrive, so a dropped connection keeps what got
    through and the client resumes from the new offset. A chunk at the final
    offset of an upload already ingested answers its results again.

    :raise OffsetMismatch: ``offset`` is not the server's.
    :raise UploadTooLarge: the chunk is over the chunk size or past the declared size.
    :raise UploadBusy: another request holds this upload.
    """
    if length > settings.chunk_size:
        raise UploadTooLarge(f"Send chunks of at most {megabytes(settings.chunk_size)}.")
    upload = find_upload(settings, owner.id, upload_id)
    with _exclusive(upload.folder):
        upload = find_upload(settings, owner.id, upload_id)  # as left by the last holder
        if offset != upload.offset:
            raise OffsetMismatch(upload.offset)
        if upload.done:
            return upload
        if offset + length > upload.size:
            raise UploadTooLarge("This chunk goes past the size declared for the upload.")
        _append(stream, upload.data_path, length)
        os.utime(upload.folder / "state.json")  # not stale while bytes keep coming
        if upload.offset == upload.size:
            _finish(upload, owner)
    return upload


def cancel_upload(settings: UploadSettings, owner_id: int, upload_id: str) -> None:
    """Forget an upload and its bytes.

    :raise UploadBusy: a chunk is being written to it right now.
    """
    upload = find_upload(settings, owner_id, upload_id)
    with _exclusive(upload.folder):
        shutil.rmtree(upload.folder)
    logger.info("upload %s cancelled by user %s", upload_id, owner_id)


def sweep_stale_uploads(settings: UploadSettings) -> int:
    """Remove every user's uploads untouched for :data:`STALE_AFTER`; return how many."""
    cutoff = (clock.now() - STALE_AFTER).timestamp()
    swept = 0
    for folder in settings.root.glob("*/*"):
        try:
            stale = (folder / "state.json").stat().st_mtime < cutoff
        except FileNotFoundError:
            stale = folder.stat().st_mtime < cutoff  # never got a state file
        if stale:
            shutil.rmtree(folder, ignore_errors=True)
            swept += 1
    if swept:
        logger.info("swept %s stale uploads", swept)
    return swept


def _clean_source(name: str) -> str:
    return _CONTROL.sub("", name.replace("\\", "/")).strip()[:1024] or "unnamed"


@contextmanager
def _exclusive(folder: Path) -> Iterator[None]:
    """Hold the upload's lock file, or refuse at once if another request holds it."""
    try:
        handle = open(folder / "lock", "a")  # noqa: SIM115 - closed in the finally below
    except FileNotFoundError:
        raise NotFound(_GONE) from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UploadBusy("This upload is busy; ask for its offset and retry.") from None
        yield
    finally:
        handle.close()


def _append(stream: BinaryIO, path: Path, length: int) -> None:
    """Copy up to ``length`` bytes to the end of ``path``, a block at a time."""
    with open(path, "ab") as out:
        remaining = length
        while remaining and (block := stream.read(min(_COPY_BLOCK, remaining))):
            out.write(block)
            remaining -= len(block)


def _finish(upload: ChunkedUpload, owner: User) -> None:
    """Ingest the whole file, keep its results in the state, drop its bytes, audit."""
    results = [
        replace(r, source=upload.source + r.source[len(_DATA) :]) for r in _ingest(upload, owner)
    ]
    upload.results = [
        {"source": r.source, "status": str(r.status), "reason": r.reason} for r in results
    ]
    upload.save()
    upload.data_path.unlink()
    counts = Counter(str(r.status) for r in results)
    record(
        "upload.completed",
        owner,
        target=f"upload:{upload.id}",
        kind=upload.kind,
        bytes=upload.size,
        files=len(results),
        **counts,
    )
    db.session.commit()
    logger.info("upload %s ingested: %s", upload.id, dict(counts))


def _ingest(upload: ChunkedUpload, owner: User) -> list[IngestResult]:
    if upload.kind == "zip":
        return ingest_zip(upload.data_path, owner, via="upload")
    return [ingest_file(upload.data_path, owner, via="upload")]
