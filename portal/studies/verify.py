"""Check the blob store against the study index: missing, corrupt and orphaned blobs.

Every instance row's blob is re-read and hashed; every blob under the
``instances/`` prefix is looked up in the index. A blob with no row is an
orphan: what a crash between storing a blob and committing its row leaves.
Orphans younger than a grace period are taken for ingests still in flight;
they are listed but neither counted as problems nor removed.

The index is read in short transactions between blob reads, so a long
verification holds no database lock while it hashes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import islice

from sqlalchemy import select

from portal import clock
from portal.extensions import db
from portal.storage import get_storage
from portal.storage.base import BlobNotFound, BlobStorage
from portal.studies.blobkeys import INSTANCE_PREFIX, key_created_at
from portal.studies.models import Instance

BATCH = 500
CHUNK = 1024 * 1024


@dataclass
class VerifyReport:
    """What ``storage verify`` found; blobs are named by key and instance row id only."""

    checked: int = 0
    missing: list[tuple[int, str]] = field(default_factory=list)
    corrupt: list[tuple[int, str]] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    in_flight: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Tell whether nothing is missing, corrupt, or orphaned and still there."""
        return not (self.missing or self.corrupt or set(self.orphans) - set(self.removed))


def verify_storage(
    *, repair_orphans: bool = False, grace: timedelta = timedelta(hours=1)
) -> VerifyReport:
    """Re-read every instance blob and look for orphans.

    :param repair_orphans: remove orphans older than ``grace`` (nothing else is touched).
    :param grace: orphans younger than this may belong to an ingest in flight.
    """
    storage = get_storage()
    report = VerifyReport()
    _check_instances(storage, report)
    _find_orphans(storage, report, grace)
    if repair_orphans:
        _remove_orphans(storage, report)
    return report


def _check_instances(storage: BlobStorage, report: VerifyReport) -> None:
    for instance_id, key, expected in _instance_rows():
        report.checked += 1
        try:
            actual = hash_blob(storage, key)
        except BlobNotFound:
            report.missing.append((instance_id, key))
            continue
        if actual != expected:
            report.corrupt.append((instance_id, key))


def _instance_rows() -> Iterator[tuple[int, str, str]]:
    """Yield (id, storage key, sha256) of every instance, a short transaction per batch."""
    last_id = 0
    while True:
        rows = db.session.execute(
            select(Instance.id, Instance.storage_key, Instance.sha256)
            .where(Instance.id > last_id)
            .order_by(Instance.id)
            .limit(BATCH)
        ).all()
        db.session.commit()
        if not rows:
            return
        yield from (tuple(row) for row in rows)
        last_id = rows[-1][0]


def hash_blob(storage: BlobStorage, key: str) -> str:
    """Return the SHA-256 of a stored blob, read a chunk at a time; :raise BlobNotFound:."""
    hasher = hashlib.sha256()
    with closing(storage.open(key)) as stream:
        while chunk := stream.read(CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def _find_orphans(storage: BlobStorage, report: VerifyReport, grace: timedelta) -> None:
    oldest_in_flight = clock.now() - grace
    for keys in batched(storage.iter_keys(INSTANCE_PREFIX), BATCH):
        for key in sorted(set(keys) - _indexed(keys)):
            created = key_created_at(key)
            if created is not None and created > oldest_in_flight:
                report.in_flight.append(key)
            else:
                report.orphans.append(key)


def batched(items: Iterable[str], size: int) -> Iterator[tuple[str, ...]]:
    """Yield ``items`` in tuples of at most ``size`` (``itertools.batched`` before 3.12)."""
    iterator = iter(items)
    while batch := tuple(islice(iterator, size)):
        yield batch


def _indexed(keys: tuple[str, ...]) -> set[str]:
    """Return which of ``keys`` an instance row points to."""
    found = set(
        db.session.scalars(select(Instance.storage_key).where(Instance.storage_key.in_(keys)))
    )
    db.session.commit()
    return found


def _remove_orphans(storage: BlobStorage, report: VerifyReport) -> None:
    for keys in batched(report.orphans, BATCH):
        still_orphaned = set(keys) - _indexed(keys)  # a row may have arrived since
        for key in keys:
            if key in still_orphaned:
                storage.delete(key)
                report.removed.append(key)
