"""Where files come from: a file on disk, a folder (a CD export) or a zip archive.

Each is spooled (or, for the caller's own spool files, checked where it lies)
before it is checked and stored; what is unfit gets a ``rejected`` result.
"""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

from portal.studies.archives import check_archive, entry_problem, is_clutter
from portal.studies.pipeline import IngestResult, IngestStatus, Upload, ingest_spooled
from portal.studies.policy import IngestLimits, IngestRejected, megabytes
from portal.studies.spool import SpooledFile, spool_dicom
from portal.studies.zipentry import ingest_entry

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def _rejected(source: str, reason: str) -> IngestResult:
    return IngestResult(source, IngestStatus.REJECTED, reason)


def file_result(
    path: Path,
    source: str,
    owner_id: int,
    limits: IngestLimits,
    expected_study_uid: str | None = None,
    deidentify_scope: str | None = None,
) -> IngestResult:
    """Ingest one file from disk, refusing what is not a regular file or is too large."""
    spooled = spool_file(path, source, limits)
    if isinstance(spooled, IngestResult):
        return spooled
    upload = describe_upload(source, owner_id, limits, expected_study_uid, deidentify_scope)
    try:
        return ingest_spooled(spooled, upload)
    finally:
        spooled.path.unlink(missing_ok=True)


def _too_big(limits: IngestLimits) -> str:
    return f"the file is larger than the {megabytes(limits.max_file_bytes)} limit"


def describe_upload(
    source: str,
    owner_id: int,
    limits: IngestLimits,
    expected_study_uid: str | None = None,
    deidentify_scope: str | None = None,
) -> Upload:
    """Describe a file from disk, capped at the configured file size."""
    max_bytes = limits.max_file_bytes
    return Upload(
        source, owner_id, limits, max_bytes, _too_big(limits), expected_study_uid, deidentify_scope
    )


def spool_file(path: Path, source: str, limits: IngestLimits) -> SpooledFile | IngestResult:
    """Spool a copy of a file on disk; refuse it if unfit."""
    try:
        info = path.stat()
    except OSError as exc:
        return _rejected(source, f"the file cannot be read ({exc.strerror})")
    if not stat.S_ISREG(info.st_mode):
        return _rejected(source, "not a regular file")
    too_big = _too_big(limits)
    if info.st_size > limits.max_file_bytes:
        return _rejected(source, too_big)
    try:
        stream = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        return _rejected(source, f"the file cannot be read ({exc.strerror})")
    with stream:
        try:
            return spool_dicom(stream, limits.spool_dir, limits.max_file_bytes, too_big)
        except IngestRejected as exc:
            return _rejected(source, str(exc))


def path_results(
    path: Path, source: str, owner_id: int, limits: IngestLimits, scope: str | None = None
) -> list[IngestResult]:
    """Ingest a file found on disk: a zip is opened, a symbolic link refused."""
    if path.is_symlink():
        return [_rejected(source, "a symbolic link; links are not followed")]
    if path.is_file() and _looks_like_zip(path):  # never open a FIFO or device
        return zip_results(path, source, owner_id, limits, scope)
    return [file_result(path, source, owner_id, limits, deidentify_scope=scope)]


def _looks_like_zip(path: Path) -> bool:
    """Tell a zip from a DICOM file (a DICOM may start with anything, so check DICM first)."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(132)
    except OSError:
        return False
    return head[128:132] != b"DICM" and head[:4] in _ZIP_MAGIC


def folder_results(
    root: Path, owner_id: int, limits: IngestLimits, scope: str | None = None
) -> list[IngestResult]:
    """Ingest every file under ``root`` in name order; links are refused, not followed."""
    results: list[IngestResult] = []

    def unreadable(error: OSError) -> None:
        name = Path(error.filename).relative_to(root.parent).as_posix()
        results.append(_rejected(name, f"the folder cannot be read ({error.strerror})"))

    for folder, folders, files in os.walk(root, onerror=unreadable):
        folders.sort()
        linked = [name for name in folders if os.path.islink(os.path.join(folder, name))]
        for name in sorted([*files, *linked]):
            path = Path(folder, name)
            source = path.relative_to(root.parent).as_posix()
            if not is_clutter(source):
                results.extend(path_results(path, source, owner_id, limits, scope))
    return results


def zip_results(
    path: Path, source: str, owner_id: int, limits: IngestLimits, scope: str | None = None
) -> list[IngestResult]:
    """Ingest the entries of a zip archive, or refuse it whole (unreadable, a bomb)."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        return [_rejected(source, f"not a readable zip archive ({exc})")]
    with archive:
        try:
            check_archive(archive, limits)
        except IngestRejected as exc:
            return [_rejected(source, str(exc))]
        return _entry_results(archive, source, owner_id, limits, scope)


def _entry_results(
    archive: zipfile.ZipFile,
    source: str,
    owner_id: int,
    limits: IngestLimits,
    scope: str | None = None,
) -> list[IngestResult]:
    """Ingest each entry, counting real bytes against the archive's total budget."""
    budget = limits.zip_max_total_bytes
    results = []
    for entry in archive.infolist():
        if entry.is_dir() or is_clutter(entry.filename):
            continue
        name = f"{source}/{entry.filename}"
        problem = entry_problem(entry)
        if problem is None and entry.file_size > limits.max_file_bytes:
            problem = _too_big(limits)
        if problem is not None:
            results.append(_rejected(name, problem))
            continue
        result, expanded = ingest_entry(
            archive, entry, name, owner_id, limits, budget, deidentify_scope=scope
        )
        results.append(result)
        budget -= expanded
    return results
