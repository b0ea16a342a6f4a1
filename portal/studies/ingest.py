"""The one ingest path: browser uploads, STOW-RS and C-STORE all end here.

Each function answers with an :class:`IngestResult` per file and lets no bad
file spoil the others. They commit as they go: an instance's index rows in a
transaction of their own, right after its blob is stored, then one audit event
per study the batch added to. Call them with no uncommitted work in the
session. Storage and database failures are not a file's fault, and propagate.
"""

from __future__ import annotations

import os
import stat
import zipfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from flask import current_app
from sqlalchemy import select

from portal.audit.operations import record
from portal.auth.models import User
from portal.deid.mapper import DeidMapper
from portal.extensions import db
from portal.studies.archives import check_archive, entry_problem, is_clutter
from portal.studies.models import Study
from portal.studies.pipeline import IngestResult, IngestStatus, Upload, ingest_stream
from portal.studies.policy import IngestLimits, IngestRejected, megabytes
from portal.studies.zipentry import ingest_entry

__all__ = [
    "IngestResult",
    "IngestStatus",
    "ingest_file",
    "ingest_paths",
    "ingest_zip",
    "record_ingest",
]

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def ingest_file(
    path: Path | str,
    owner: User,
    *,
    via: str = "upload",
    audit: bool = True,
    expected_study_uid: str | None = None,
    deidentify_scope: str | None = None,
) -> IngestResult:
    """Ingest one DICOM file for ``owner``.

    :param via: how the file arrived (``upload``, ``stow``, ``cstore``...), for the audit log.
    :param audit: ``False`` when the caller audits a larger batch with :func:`record_ingest`.
    :param expected_study_uid: refuse (``wrong_study``) a file of any other study (the
        original Study Instance UID, when de-identifying).
    :param deidentify_scope: store a de-identified copy instead (PS3.15 Basic Profile),
        its replacement UIDs and pseudonyms consistent within this scope (a case, say)
        and kept in :class:`~portal.deid.models.DeidMapping` rows.
    :raise ValueError: ``deidentify_scope`` is empty or over 100 characters.
    """
    path = Path(path)
    _check_scope(deidentify_scope)
    result = _file_result(
        path, path.name, owner.id, current_limits(), expected_study_uid, deidentify_scope
    )
    if audit:
        record_ingest([result], owner, via)
    return result


def ingest_zip(
    path: Path | str, owner: User, *, via: str = "zip", deidentify_scope: str | None = None
) -> list[IngestResult]:
    """Ingest every DICOM file in a zip archive, nested folders included.

    The archive is refused whole when its central directory declares too many
    entries or too many bytes; entries that are encrypted, have unsafe paths or
    expand past what they declare are refused one by one. Folders and
    operating-system litter (``__MACOSX/``, ``.DS_Store``) give no result; a
    DICOMDIR gives a ``skipped`` one. ``deidentify_scope``: as for :func:`ingest_file`.
    """
    path = Path(path)
    _check_scope(deidentify_scope)
    results = _zip_results(path, path.name, owner.id, current_limits(), deidentify_scope)
    record_ingest(results, owner, via)
    return results


def ingest_paths(
    paths: Iterable[Path | str],
    owner: User,
    *,
    via: str = "folder",
    deidentify_scope: str | None = None,
) -> list[IngestResult]:
    """Ingest files, zips and folders (a CD export with its DICOMDIR, say), walking folders.

    Symbolic links are reported and not followed. Results name each file by
    its path from the folder given. ``deidentify_scope``: as for :func:`ingest_file`.
    """
    _check_scope(deidentify_scope)
    limits = current_limits()
    results: list[IngestResult] = []
    for path in map(Path, paths):
        if path.is_dir() and not path.is_symlink():
            results.extend(_folder_results(path, owner.id, limits, deidentify_scope))
        else:
            results.extend(_any_file_results(path, path.name, owner.id, limits, deidentify_scope))
    record_ingest(results, owner, via)
    return results


def record_ingest(results: Iterable[IngestResult], owner: User, via: str) -> None:
    """Audit a batch: one ``study.ingested`` event per study it added instances to; commit.

    The events carry row ids and counts only, never patient data or UIDs.
    """
    counts = Counter((r.study_instance_uid, r.status) for r in results)
    accepted = {uid for (uid, status) in counts if status is IngestStatus.ACCEPTED}
    if not accepted:
        return
    studies = db.session.execute(
        select(Study.id, Study.study_instance_uid).where(Study.study_instance_uid.in_(accepted))
    ).all()
    for study_id, uid in sorted(studies):
        record(
            "study.ingested",
            owner,
            target=f"study:{study_id}",
            via=via,
            accepted=counts[uid, IngestStatus.ACCEPTED],
            duplicate=counts[uid, IngestStatus.DUPLICATE],
            conflict=counts[uid, IngestStatus.CONFLICT],
        )
    db.session.commit()


def current_limits() -> IngestLimits:
    """Return the ingest limits of the current app."""
    return IngestLimits.from_config(current_app.config)


def _check_scope(scope: str | None) -> None:
    """:raise ValueError: ``scope`` is given but cannot name a de-identification scope."""
    if scope is not None:
        DeidMapper(scope, None)


def _rejected(source: str, reason: str) -> IngestResult:
    return IngestResult(source, IngestStatus.REJECTED, reason)


def _file_result(
    path: Path,
    source: str,
    owner_id: int,
    limits: IngestLimits,
    expected_study_uid: str | None = None,
    deidentify_scope: str | None = None,
) -> IngestResult:
    """Ingest one file from disk, refusing what is not a regular file or is too large."""
    try:
        info = path.stat()
    except OSError as exc:
        return _rejected(source, f"the file cannot be read ({exc.strerror})")
    if not stat.S_ISREG(info.st_mode):
        return _rejected(source, "not a regular file")
    too_big = f"the file is larger than the {megabytes(limits.max_file_bytes)} limit"
    if info.st_size > limits.max_file_bytes:
        return _rejected(source, too_big)
    upload = Upload(
        source,
        owner_id,
        limits,
        limits.max_file_bytes,
        too_big,
        expected_study_uid,
        deidentify_scope,
    )
    try:
        stream = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        return _rejected(source, f"the file cannot be read ({exc.strerror})")
    with stream:
        return ingest_stream(stream, upload)


def _any_file_results(
    path: Path, source: str, owner_id: int, limits: IngestLimits, scope: str | None = None
) -> list[IngestResult]:
    """Ingest a file found on disk: a zip is opened, a symbolic link refused."""
    if path.is_symlink():
        return [_rejected(source, "a symbolic link; links are not followed")]
    if path.is_file() and _looks_like_zip(path):  # never open a FIFO or device
        return _zip_results(path, source, owner_id, limits, scope)
    return [_file_result(path, source, owner_id, limits, deidentify_scope=scope)]


def _looks_like_zip(path: Path) -> bool:
    """Tell a zip from a DICOM file (a DICOM may start with anything, so check DICM first)."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(132)
    except OSError:
        return False
    return head[128:132] != b"DICM" and head[:4] in _ZIP_MAGIC


def _folder_results(
    root: Path, owner_id: int, limits: IngestLimits, scope: str | None = None
) -> list[IngestResult]:
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
                results.extend(_any_file_results(path, source, owner_id, limits, scope))
    return results


def _zip_results(
    path: Path, source: str, owner_id: int, limits: IngestLimits, scope: str | None = None
) -> list[IngestResult]:
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
            problem = f"the file is larger than the {megabytes(limits.max_file_bytes)} limit"
        if problem is not None:
            results.append(_rejected(name, problem))
            continue
        result, expanded = ingest_entry(
            archive, entry, name, owner_id, limits, budget, deidentify_scope=scope
        )
        results.append(result)
        budget -= expanded
    return results
