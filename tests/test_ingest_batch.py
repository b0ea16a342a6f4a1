"""Ingest of several files as one batch: blobs durable first, then one commit for the rows."""

from __future__ import annotations

import shutil
import threading

import pytest
from sqlalchemy import event, select

from portal.audit.models import AuditEvent
from portal.errors import StorageError
from portal.extensions import db
from portal.storage import get_storage
from portal.storage import local as local_storage
from portal.studies import batch, index
from portal.studies import ingest as ingest_module
from portal.studies.ingest import IngestStatus, ingest_file, ingest_files, ingest_spooled_files
from portal.studies.models import Instance
from portal.studies.spool import SpoolWriter
from tests.ingest_support import (
    STUDY_UID,
    index_counts,
    make_dataset,
    stored_keys,
    write_dicom,
)


@pytest.fixture
def owner(create_user):
    return create_user("patient")


@pytest.fixture
def ingest_batch(app, owner):
    """``ingest_batch(paths, **kwargs)``: ingest files together as ``owner``."""

    def run(paths, **kwargs):
        with app.app_context():
            return ingest_files(paths, owner, via="test", **kwargs)

    return run


def _statuses(results) -> list[str]:
    return [str(result.status) for result in results]


def _ingest_events() -> list[AuditEvent]:
    return db.session.scalars(select(AuditEvent).where(AuditEvent.action == "study.ingested")).all()


def test_a_bad_file_spoils_nothing_and_the_batch_is_audited_once(app, ingest_batch, tmp_path):
    good = [write_dicom(tmp_path / f"{n}.dcm", InstanceNumber=n) for n in range(2)]
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"not DICOM at all")
    results = ingest_batch([good[0], bad, good[1]])
    assert _statuses(results) == ["accepted", "rejected", "accepted"]
    assert [r.source for r in results] == ["0.dcm", "bad.dcm", "1.dcm"]
    assert "'DICM' marker" in results[1].reason
    with app.app_context():
        assert index_counts()["instances"] == 2 and len(stored_keys()) == 2
        (event_row,) = _ingest_events()
        assert '"accepted": 2' in event_row.details


@pytest.mark.parametrize("app", ["sqlite", "postgresql"], indirect=True)
def test_copies_within_a_batch_are_a_duplicate_and_a_conflict(app, ingest_batch, tmp_path):
    ds = make_dataset()
    first = write_dicom(tmp_path / "first.dcm", ds)
    same = tmp_path / "same.dcm"
    shutil.copyfile(first, same)
    other = write_dicom(
        tmp_path / "other.dcm", make_dataset(SOPInstanceUID=ds.SOPInstanceUID, PatientName="X^Y")
    )
    results = ingest_batch([first, same, other])
    assert _statuses(results) == ["accepted", "duplicate", "conflict"]
    assert "first copy was kept" in results[2].reason
    with app.app_context():
        assert index_counts()["instances"] == 1 and len(stored_keys()) == 1
        (event_row,) = _ingest_events()
        assert '"accepted": 1' in event_row.details and '"conflict": 1' in event_row.details


def test_a_stored_instance_makes_its_copy_in_a_batch_a_conflict(app, owner, ingest_batch, tmp_path):
    ds = make_dataset()
    with app.app_context():
        assert ingest_file(write_dicom(tmp_path / "stored.dcm", ds), owner).status == "accepted"
    other = write_dicom(
        tmp_path / "other.dcm", make_dataset(SOPInstanceUID=ds.SOPInstanceUID, PatientName="X^Y")
    )
    results = ingest_batch([other, write_dicom(tmp_path / "new.dcm")])
    assert _statuses(results) == ["conflict", "accepted"]
    with app.app_context():
        assert index_counts()["instances"] == 2 and len(stored_keys()) == 2


def test_the_rows_of_a_batch_are_inserted_at_once_after_one_blob_call(
    app, owner, tmp_path, monkeypatch
):
    paths = [write_dicom(tmp_path / f"{n}.dcm", InstanceNumber=n) for n in range(5)]
    with app.app_context():
        storage, engine = get_storage(), db.engine
    real_put, calls, inserts = storage.put_files, [], []

    def put_files(blobs, **kwargs):
        calls.append(len(blobs))
        real_put(blobs, **kwargs)

    def count_inserts(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("INSERT INTO instances"):
            inserts.append(len(parameters) if executemany else 1)

    monkeypatch.setattr(storage, "put_files", put_files)
    event.listen(engine, "before_cursor_execute", count_inserts)
    try:
        with app.app_context():
            results = ingest_files(paths, owner, via="test")
    finally:
        event.remove(engine, "before_cursor_execute", count_inserts)
    assert _statuses(results) == ["accepted"] * 5
    assert calls == [5]
    assert inserts == [5]


def test_a_file_of_a_known_series_takes_one_short_write_transaction(app, owner, tmp_path):
    """The statements of a one-file ingest, the STOW-RS case: each one is needed once."""
    write_dicom(tmp_path / "first.dcm", InstanceNumber=1)
    second = write_dicom(tmp_path / "second.dcm", InstanceNumber=2)
    with app.app_context():
        ingest_files([tmp_path / "first.dcm"], owner, via="test")
        owner.email  # noqa: B018 - the caller has its user loaded, as a token check leaves it
        engine, statements = db.engine, []

        def note(conn, cursor, statement, parameters, context, executemany):
            statements.append(" ".join(statement.split()[:3]))

        event.listen(engine, "before_cursor_execute", note)
        try:
            (result,) = ingest_files([second], owner, via="test")
        finally:
            event.remove(engine, "before_cursor_execute", note)
    assert result.status is IngestStatus.ACCEPTED
    assert statements == [
        "SELECT instances.sop_instance_uid, instances.sha256,",  # stored copies
        "SELECT studies.id, studies.study_instance_uid,",  # the study and its owner
        "SELECT series.id FROM",
        "INSERT INTO instances",
        "SELECT audit_events.seq, audit_events.hash",  # the chain's last link
        "INSERT INTO audit_events",  # the user is not read again
    ]


def test_a_batch_is_split_into_transactions_and_audited_once(
    app, ingest_batch, tmp_path, monkeypatch
):
    monkeypatch.setattr(batch, "BATCH_SIZE", 2)
    paths = [write_dicom(tmp_path / f"{n}.dcm", InstanceNumber=n) for n in range(5)]
    assert _statuses(ingest_batch(paths)) == ["accepted"] * 5
    with app.app_context():
        (event_row,) = _ingest_events()
        assert '"accepted": 5' in event_row.details


@pytest.mark.parametrize("app", ["postgresql"], indirect=True)
def test_a_race_lost_at_the_commit_is_sorted_out_one_file_at_a_time(
    app, owner, tmp_path, monkeypatch
):
    """Another ingest commits one of the batch's instances after the batch looked it up.

    (On SQLite the batch holds the write lock from its look-up on: no one can.)
    """
    paths = [write_dicom(tmp_path / f"{n}.dcm", InstanceNumber=n) for n in range(3)]
    racer = tmp_path / "racer.dcm"
    shutil.copyfile(paths[1], racer)
    real_lookup, raced = index.stored_instances, threading.Event()

    def race(uids):
        with app.app_context():
            assert ingest_file(racer, owner).status == "accepted"

    def stored_instances(uids):
        found = real_lookup(uids)
        if not raced.is_set():
            raced.set()
            racing = threading.Thread(target=race, args=(uids,))
            racing.start()
            racing.join(30)
        return found

    monkeypatch.setattr(index, "stored_instances", stored_instances)
    with app.app_context():
        results = ingest_files(paths, owner, via="test")
        assert _statuses(results) == ["accepted", "duplicate", "accepted"]
        assert index_counts()["instances"] == 3
        assert len(stored_keys()) == 3  # the loser's blob is gone
        stored = set(db.session.scalars(select(Instance.storage_key)))
        assert stored == set(stored_keys())


def test_spooled_files_are_moved_into_storage_with_their_preamble_zeroed(app, owner, tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir(exist_ok=True)
    original = write_dicom(tmp_path / "part.dcm", preamble=b"MZ" + b"\x90" * 126).read_bytes()
    writer = SpoolWriter(spool)  # as STOW-RS spools a part
    writer.write(original)
    spooled = writer.close()
    with app.app_context():
        (result,) = ingest_spooled_files([("part.dcm", spooled)], owner, via="test")
    assert result.status is IngestStatus.ACCEPTED
    assert not spooled.path.exists()
    with app.app_context():
        key = db.session.scalars(select(Instance.storage_key)).one()
        with get_storage().open(key) as blob:
            assert blob.read() == bytes(128) + original[128:]


def test_a_storage_failure_indexes_nothing_of_the_batch(app, ingest_batch, tmp_path, monkeypatch):
    paths = [write_dicom(tmp_path / f"{n}.dcm", InstanceNumber=n) for n in range(3)]
    real_rename, renamed = local_storage._rename_into_place, []

    def rename_then_fail(path, target):
        if renamed:
            raise OSError(28, "No space left on device")
        renamed.append(real_rename(path, target))
        return renamed[-1]

    monkeypatch.setattr(local_storage, "_rename_into_place", rename_then_fail)
    with pytest.raises(StorageError):
        ingest_batch(paths)
    with app.app_context():
        assert index_counts()["instances"] == 0
        assert stored_keys() == []  # the blob stored before the failure was removed


def test_a_batch_of_another_accounts_study_stores_no_blob(
    app, owner, create_user, ingest_batch, tmp_path
):
    with app.app_context():
        assert ingest_file(write_dicom(tmp_path / "a.dcm"), owner).status == "accepted"
    stranger = create_user("physician")
    with app.app_context():
        results = ingest_files([write_dicom(tmp_path / "b.dcm")], stranger, via="test")
        assert _statuses(results) == ["rejected"] and "another account" in results[0].reason
        assert results[0].study_instance_uid == STUDY_UID
        assert len(stored_keys()) == 1


def test_no_transaction_is_open_while_files_are_parsed_or_stored(app, owner, tmp_path, monkeypatch):
    """On SQLite every transaction holds the write lock: none may span the file work."""
    paths = [write_dicom(tmp_path / f"{n}.dcm", InstanceNumber=n) for n in range(2)]
    real_check, real_put, seen = ingest_module.check_spooled, batch._put_blobs, []

    def check_spooled(*args):
        seen.append(("check", db.session().in_transaction()))
        return real_check(*args)

    def put_blobs(*args):
        seen.append(("put", db.session().in_transaction()))
        real_put(*args)

    monkeypatch.setattr(ingest_module, "check_spooled", check_spooled)
    monkeypatch.setattr(batch, "_put_blobs", put_blobs)
    with app.app_context():
        db.session.get(type(owner), owner.id)  # the caller has a transaction open
        assert db.session().in_transaction()
        assert _statuses(ingest_files(paths, owner, via="test")) == ["accepted"] * 2
    assert seen == [("check", False), ("check", False), ("put", False)]
