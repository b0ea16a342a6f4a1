"""Prior reports attached to a case: PDFs and images, checked by content and size.

The declared content type of an upload is not trusted: the first bytes must be
those of a PDF, PNG or JPEG. Blobs go to the blob store under random keys.
"""

from __future__ import annotations

import hashlib
import tempfile
import uuid
from pathlib import Path
from typing import BinaryIO

from flask import current_app

from portal.cases.models import CaseAttachment
from portal.errors import InvalidInput
from portal.storage import get_storage

ATTACHMENT_PREFIX = "attachments/"
SIGNATURES = (
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
)
_CHUNK = 1 << 20


def sniff(head: bytes) -> str | None:
    """Return the content type the first bytes show, or ``None`` if not allowed."""
    return next((kind for magic, kind in SIGNATURES if head.startswith(magic)), None)


def clean_filename(name: str) -> str:
    """Return the last path part of ``name``, printable and at most 200 characters."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip()
    return base[-200:] or "attachment"


def store_attachment(stream: BinaryIO, filename: str, uploaded_by_id: int) -> CaseAttachment:
    """Check and store one upload; return its (unattached, unsaved) row.

    :raise InvalidInput: the file is empty, too large, or not a PDF, PNG or JPEG.
    """
    name = clean_filename(filename)
    limit = current_app.config["ATTACHMENT_MAX_MB"] * 1024 * 1024
    spool = Path(current_app.config["SPOOL_DIR"])
    spool.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=spool, prefix="attachment-") as temp:
        size, digest, head = _copy(stream, temp, limit, name)
        content_type = sniff(head)
        if content_type is None:
            raise InvalidInput(f"{name} is not a PDF, PNG or JPEG file.")
        temp.flush()
        key = f"{ATTACHMENT_PREFIX}{uuid.uuid4().hex}"
        get_storage().put_file(key, Path(temp.name))
    return CaseAttachment(
        filename=name,
        content_type=content_type,
        size_bytes=size,
        sha256=digest,
        storage_key=key,
        uploaded_by_id=uploaded_by_id,
    )


def _copy(stream: BinaryIO, out: BinaryIO, limit: int, name: str) -> tuple[int, str, bytes]:
    digest = hashlib.sha256()
    size, head = 0, b""
    while chunk := stream.read(_CHUNK):
        size += len(chunk)
        if size > limit:
            mb = current_app.config["ATTACHMENT_MAX_MB"]
            raise InvalidInput(f"{name} is larger than {mb} MB.")
        if len(head) < 16:
            head = (head + chunk)[:16]
        digest.update(chunk)
        out.write(chunk)
    if size == 0:
        raise InvalidInput(f"{name} is empty.")
    return size, digest.hexdigest(), head


def discard(attachments: list[CaseAttachment]) -> None:
    """Remove the blobs of attachments whose rows were never committed."""
    storage = get_storage()
    for attachment in attachments:
        storage.delete(attachment.storage_key)
