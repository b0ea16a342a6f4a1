"""Store checked files in batches: every blob made durable first, then one commit for their rows.

The order is what keeps a crash harmless. All blobs of a batch are durable
(each file fsynced, each folder once) before the transaction that indexes
them commits, so a crash or kill at any moment leaves at worst blobs that no
row points to (``storage verify`` lists them, and ages them out of a grace
period), never a row without its blob.

One transaction per batch looks the files up, deduplicates them (against the
index and against each other, in order) and adds the rows of the new ones; the
blobs of the others are removed once it has committed. So a copy of a stored
instance costs a blob write but takes the database's write lock only once
with the rest of its batch. When the commit meets a unique constraint (another
ingest stored one of the batch's instances meanwhile), the batch is indexed
again one file per transaction, and each race lost is answered as the
duplicate or conflict it turned out to be. Any other failure rolls the index
back, removes the batch's blobs and propagates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace

from sqlalchemy.exc import IntegrityError

from portal.errors import StorageError
from portal.extensions import db
from portal.storage import get_storage
from portal.studies import index
from portal.studies.blobkeys import new_instance_key
from portal.studies.policy import IngestRejected
from portal.studies.results import CONFLICT, DUPLICATE, CheckedFile, IngestResult, IngestStatus

logger = logging.getLogger(__name__)

# Instances per transaction: bounds how long one commit holds the write lock,
# and how many blobs a crash can leave waiting for their rows.
BATCH_SIZE = 200

AuditHook = Callable[[list[IngestResult], Mapping[str, int]], None]
"""Add the audit rows for these results to the session, without committing.

It is also given the ids of some of the studies they name (by Study Instance
UID), read in the same transaction, and looks up any others itself.
"""


def store_files(
    files: Sequence[CheckedFile],
    owner_id: int,
    *,
    audit: AuditHook | None = None,
) -> list[IngestResult]:
    """Deduplicate, store and index ``files`` for ``owner_id``; return a result for each, in order.

    Call with no transaction open: the session is committed as the batches go.
    The spooled files are moved into the blob store where it can (the caller
    removes whatever is left of them).

    :param audit: called once, inside the last batch's transaction, with every result.
    :raise StorageError: the blob store failed; the batch it failed in is not indexed.
    """
    done: list[IngestResult] = []
    for start in range(0, len(files), BATCH_SIZE):
        last = start + BATCH_SIZE >= len(files)
        hook = None if audit is None or not last else _audit_all(audit, list(done))
        done.extend(_store_batch(files[start : start + BATCH_SIZE], owner_id, hook))
    return done


def _audit_all(audit: AuditHook, earlier: list[IngestResult]) -> AuditHook:
    return lambda results, study_ids: audit(earlier + results, study_ids)


def _store_batch(
    files: Sequence[CheckedFile], owner_id: int, audit: AuditHook | None
) -> list[IngestResult]:
    keys = {n: new_instance_key() for n in _first_copies(files)}
    _put_blobs(files, keys)
    try:
        results, study_ids = _index_together(files, keys, owner_id)
        _commit(results, study_ids, audit)
    except IntegrityError:  # lost a race for a SOP Instance UID: sort it out one by one
        db.session.rollback()
        results = _index_one_by_one(files, keys, owner_id)
        _commit(results, {}, audit)
    except BaseException:
        db.session.rollback()
        remove_blobs(keys.values())
        raise
    remove_blobs(key for n, key in keys.items() if not _stored(results[n]))
    return results


def _stored(result: IngestResult) -> bool:
    """Tell whether the file's own blob is now indexed (it was accepted)."""
    return result.status is IngestStatus.ACCEPTED


def _first_copies(files: Sequence[CheckedFile]) -> list[int]:
    """Return the positions of the first file of each SOP Instance UID: those get a blob."""
    first: dict[str, int] = {}
    for n, file in enumerate(files):
        first.setdefault(file.header.sop_instance_uid, n)
    return sorted(first.values())


def _put_blobs(files: Sequence[CheckedFile], keys: dict[int, str]) -> None:
    """Make every new blob durable; on failure remove those stored and propagate."""
    try:
        blobs = [(key, files[n].spooled.path) for n, key in keys.items()]
        get_storage().put_files(blobs, move=True)
    except BaseException:
        remove_blobs(keys.values())
        raise


def _commit(
    results: list[IngestResult], study_ids: Mapping[str, int], audit: AuditHook | None
) -> None:
    if audit is not None:
        audit(results, study_ids)
    db.session.commit()


def _index_together(
    files: Sequence[CheckedFile],
    keys: dict[int, str],
    owner_id: int,
    earlier: Sequence[IngestResult] = (),
) -> tuple[list[IngestResult], dict[str, int]]:
    """Judge each file against the index, in order, and add rows for the new ones; flush.

    :param keys: the blob key of each file that has one (by position).
    :param earlier: results of files before these, that a later copy may repeat.
    :return: a result per file, and the id of each study they name that is stored.
    """
    stored = index.stored_instances(sorted({f.header.sop_instance_uid for f in files}))
    writer = index.IndexWriter(f.header.study_instance_uid for f in files)
    results: list[IngestResult] = []
    for n, file in enumerate(files):
        uid = file.header.sop_instance_uid
        owner = writer.study_owner(file.header.study_instance_uid)
        result = _judge(file, owner_id, stored.get(uid), owner)
        if result is None and n in keys:
            result = _add(writer, file, keys[n], owner_id)
        elif result is None:  # its first copy was refused: answer as that one
            first = next(r for r in [*earlier, *results] if r.sop_instance_uid == uid)
            result = replace(first, source=file.source)
        if result.status is IngestStatus.ACCEPTED:  # later copies meet this one
            stored[uid] = (file.spooled.sha256, owner_id)
        results.append(result)
    writer.flush()
    return results, {uid: study.id for uid, study in writer.studies.items()}


def _judge(
    file: CheckedFile, owner_id: int, known: tuple[str, int] | None, study_owner: int | None
) -> IngestResult | None:
    """Answer a file that is a copy, or of another account's study; ``None``: store it."""
    if known is not None:
        sha256, known_owner = known
        if known_owner != owner_id:
            return file.result(IngestStatus.REJECTED, index.FOREIGN_STUDY)
        if sha256 == file.spooled.sha256:
            return file.result(IngestStatus.DUPLICATE, DUPLICATE)
        return file.result(IngestStatus.CONFLICT, CONFLICT)
    if study_owner is not None and study_owner != owner_id:
        return file.result(IngestStatus.REJECTED, index.FOREIGN_STUDY)
    return None


def _add(writer: index.IndexWriter, file: CheckedFile, key: str, owner_id: int) -> IngestResult:
    try:
        writer.add_instance(file.header, owner_id, file.spooled, key)
    except IngestRejected as exc:  # a study of another account's, made meanwhile
        return file.result(IngestStatus.REJECTED, str(exc))
    return file.result(IngestStatus.ACCEPTED)


def _index_one_by_one(
    files: Sequence[CheckedFile], keys: dict[int, str], owner_id: int
) -> list[IngestResult]:
    """Index each file in a transaction of its own, in order."""
    results: list[IngestResult] = []
    for n, file in enumerate(files):
        try:
            results.append(_index_alone(file, keys.get(n), owner_id, results))
        except BaseException:
            remove_blobs(key for m, key in keys.items() if m >= n or not _stored(results[m]))
            raise
    return results


def _index_alone(
    file: CheckedFile, key: str | None, owner_id: int, earlier: Sequence[IngestResult]
) -> IngestResult:
    try:
        return _commit_alone(file, key, owner_id, earlier)
    except IntegrityError:  # another ingest stored it meanwhile: now the index says so
        return _commit_alone(file, key, owner_id, earlier)


def _commit_alone(
    file: CheckedFile, key: str | None, owner_id: int, earlier: Sequence[IngestResult]
) -> IngestResult:
    try:
        keys = {} if key is None else {0: key}
        (result,), _ = _index_together([file], keys, owner_id, earlier)
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return result


def remove_blobs(keys: Iterable[str]) -> None:
    """Remove the blobs stored under ``keys``, if they are there."""
    storage = get_storage()
    for key in keys:
        try:
            storage.delete(key)
        except StorageError:
            logger.warning("ingest: could not remove blob %s; storage verify will list it", key)
