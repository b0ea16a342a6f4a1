"""Judge a zip archive and its entries before a byte of them is extracted.

Entries are never written under their own names, so a hostile name cannot
land a file anywhere; such names are still refused, so the uploader hears of it.
"""

from __future__ import annotations

import re
import stat
import zipfile
from pathlib import PurePosixPath

from portal.studies.policy import IngestLimits, IngestRejected, megabytes

_ENCRYPTED_FLAG = 0x1
_DRIVE = re.compile(r"^[A-Za-z]:")
_SUPPORTED_COMPRESSION = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)
# What operating systems add to archives and folders of their own accord.
_CLUTTER_NAMES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
_CLUTTER_FOLDERS = frozenset({"__MACOSX"})


def check_archive(archive: zipfile.ZipFile, limits: IngestLimits) -> None:
    """Check the entry count and total uncompressed size the central directory declares.

    :raise IngestRejected: the archive is over either cap (a zip bomb, or just too big).
    """
    entries = archive.infolist()
    if len(entries) > limits.zip_max_members:
        raise IngestRejected(
            f"the zip holds {len(entries)} entries; at most {limits.zip_max_members} are allowed"
        )
    total = sum(entry.file_size for entry in entries)
    if total > limits.zip_max_total_bytes:
        raise IngestRejected(
            f"the zip would expand to {megabytes(total)}, over the"
            f" {megabytes(limits.zip_max_total_bytes)} limit"
        )


def entry_problem(entry: zipfile.ZipInfo) -> str | None:
    """Return why this entry must not be extracted, or ``None`` if it may be."""
    if entry.flag_bits & _ENCRYPTED_FLAG:
        return "the zip entry is encrypted (password-protected); zip the files without a password"
    if is_unsafe_name(entry.filename):
        return "the zip entry's path is absolute or climbs out with '..'; it was not extracted"
    if stat.S_ISLNK(entry.external_attr >> 16):
        return "the zip entry is a symbolic link; links are not followed"
    if entry.compress_type not in _SUPPORTED_COMPRESSION:
        return f"the zip entry uses an unsupported compression method ({entry.compress_type})"
    return None


def is_unsafe_name(name: str) -> bool:
    """Tell whether an archive path is absolute, names a drive, or contains ``..``."""
    normalised = name.replace("\\", "/")
    return (
        normalised.startswith("/")
        or bool(_DRIVE.match(normalised))
        or "\x00" in normalised
        or ".." in normalised.split("/")
    )


def is_clutter(name: str) -> bool:
    """Tell whether a path is operating-system litter (``__MACOSX/``, ``._x``, ``.DS_Store``)."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if not parts:
        return False
    return (
        parts[-1] in _CLUTTER_NAMES
        or parts[-1].startswith("._")
        or any(part in _CLUTTER_FOLDERS for part in parts)
    )
