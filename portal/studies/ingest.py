"""The one ingest path: browser uploads, STOW-RS and C-STORE all end here.

Each function answers with an :class:`IngestResult` per file and lets no bad
file spoil the others. They commit as they go: the blobs of a batch are made
durable, then the batch's index rows are committed in one transaction (see
:mod:`portal.studies.batch`), with one audit event per study the call added
to. Call them with no uncommitted work in the session. Storage and database
failures are not a file's fault, and propagate.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from flask import current_app
from sqlalchemy import inspect, select

from portal.audit.operations import record
from portal.auth.models import User
from portal.database import commit_keeping_loaded
from portal.deid.mapper import DeidMapper
from portal.extensions import db
from portal.storage import get_storage
from portal.studies.batch import AuditHook, store_files
from portal.studies.models import Study
from portal.studies.pipeline import CheckedFile, IngestResult, IngestStatus, check_spooled
from portal.studies.policy import IngestLimits
from portal.studies.sources import (
    describe_upload,
    file_result,
    folder_results,
    path_results,
    spool_file,
    zip_results,
)
from portal.studies.spool import SpooledFile

__all__ = [
    "IngestResult",
    "IngestStatus",
    "ingest_file",
    "ingest_files",
    "ingest_paths",
    "ingest_spooled_files",
    "ingest_zip",
    "record_ingest",
]


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
    if deidentify_scope is None:
        results = ingest_files(
            [path], owner, via=via, audit=audit, expected_study_uid=expected_study_uid
        )
        return results[0]
    result = file_result(
        path, path.name, owner.id, current_limits(), expected_study_uid, deidentify_scope
    )
    if audit:
        record_ingest([result], owner, via)
    return result


def ingest_files(
    paths: Sequence[Path | str],
    owner: User,
    *,
    via: str,
    audit: bool = True,
    expected_study_uid: str | None = None,
) -> list[IngestResult]:
    """Ingest DICOM files together: their blobs made durable, then their rows committed at once.

    Copies of one instance among ``paths`` are deduplicated; the audit event
    commits with the last batch of rows. Results name each file by its name.

    :param via: as for :func:`ingest_file`; ``audit``, ``expected_study_uid`` too.
    """
    limits = current_limits()
    _owner_id(owner)  # no transaction (and no write lock) held while files are copied
    files: list[tuple[str, SpooledFile | IngestResult]] = []
    try:
        for path in map(Path, paths):
            files.append((path.name, spool_file(path, path.name, limits)))
        return ingest_spooled_files(
            files, owner, via=via, audit=audit, expected_study_uid=expected_study_uid
        )
    finally:
        for _, file in files:
            if isinstance(file, SpooledFile):
                file.path.unlink(missing_ok=True)


def ingest_spooled_files(
    files: Sequence[tuple[str, SpooledFile | IngestResult]],
    owner: User,
    *,
    via: str,
    audit: bool = True,
    expected_study_uid: str | None = None,
) -> list[IngestResult]:
    """Ingest files already in the spool folder, as :func:`ingest_files` does; one result each.

    :param files: each file's name for its result, and the file (or the
        result it got already, which is answered as it is). Each file may be
        moved into the blob store; the caller removes whatever is left of them.
    """
    limits = current_limits()
    owner_id = _owner_id(owner)
    spooled = [file.path for _, file in files if isinstance(file, SpooledFile)]
    get_storage().prepare_files(spooled)  # its work overlaps with checking the headers
    outcomes: list[CheckedFile | IngestResult] = []
    for source, file in files:
        if isinstance(file, IngestResult):
            outcomes.append(file)
            continue
        upload = describe_upload(source, owner_id, limits, expected_study_uid)
        outcomes.append(check_spooled(file, upload))
    checked = [outcome for outcome in outcomes if isinstance(outcome, CheckedFile)]
    stored = iter(store_files(checked, owner_id, audit=_auditor(owner, via, audit)))
    return [next(stored) if isinstance(o, CheckedFile) else o for o in outcomes]


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
    results = zip_results(path, path.name, _owner_id(owner), current_limits(), deidentify_scope)
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
    limits, owner_id = current_limits(), _owner_id(owner)
    results: list[IngestResult] = []
    for path in map(Path, paths):
        if path.is_dir() and not path.is_symlink():
            results.extend(folder_results(path, owner_id, limits, deidentify_scope))
        else:
            results.extend(path_results(path, path.name, owner_id, limits, deidentify_scope))
    record_ingest(results, owner, via)
    return results


def record_ingest(results: Iterable[IngestResult], owner: User, via: str) -> None:
    """Audit a batch: one ``study.ingested`` event per study it added instances to; commit."""
    if add_ingest_events(results, owner, via):
        db.session.commit()


def add_ingest_events(
    results: Iterable[IngestResult],
    owner: User,
    via: str,
    study_ids: Mapping[str, int] | None = None,
) -> bool:
    """Add a ``study.ingested`` event per study the results added instances to; don't commit.

    The events carry row ids and counts only, never patient data or UIDs.
    Return whether there was any.

    :param study_ids: ids of studies by Study Instance UID, known already; others are read.
    """
    counts = Counter((r.study_instance_uid, r.status) for r in results)
    accepted = {uid for (uid, status) in counts if status is IngestStatus.ACCEPTED}
    if not accepted:
        return False
    known = {uid: study_id for uid, study_id in (study_ids or {}).items() if uid in accepted}
    if missing := accepted - known.keys():
        rows = db.session.execute(
            select(Study.study_instance_uid, Study.id).where(Study.study_instance_uid.in_(missing))
        )
        known.update({uid: study_id for uid, study_id in rows})
    for study_id, uid in sorted((study_id, uid) for uid, study_id in known.items()):
        record(
            "study.ingested",
            owner,
            target=f"study:{study_id}",
            via=via,
            accepted=counts[uid, IngestStatus.ACCEPTED],
            duplicate=counts[uid, IngestStatus.DUPLICATE],
            conflict=counts[uid, IngestStatus.CONFLICT],
        )
    return True


def current_limits() -> IngestLimits:
    """Return the ingest limits of the current app."""
    return IngestLimits.from_config(current_app.config)


def _auditor(owner: User, via: str, audit: bool) -> AuditHook | None:
    """Return the hook that audits a batch in its own transaction, or ``None`` not to."""
    if not audit:
        return None

    def add_events(results: list[IngestResult], study_ids: Mapping[str, int]) -> None:
        add_ingest_events(results, owner, via, study_ids)

    return add_events


def _owner_id(owner: User) -> int:
    """Return ``owner``'s id, and end the session's transaction before the file work.

    On SQLite every transaction takes the write lock up front (``BEGIN
    IMMEDIATE``): one left open by the caller (to read the owner or an API
    token) would hold off every other writer while files are spooled and
    parsed. The id comes from the identity key, so an owner the caller's
    commit expired costs no query (and no lock) to reload.
    """
    identity = inspect(owner).identity
    owner_id = owner.id if identity is None else identity[0]
    commit_keeping_loaded()  # the owner, read already, is not read again for the audit row
    return owner_id


def _check_scope(scope: str | None) -> None:
    """:raise ValueError: ``scope`` is given but cannot name a de-identification scope."""
    if scope is not None:
        DeidMapper(scope, None)
