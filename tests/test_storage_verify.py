"""``flask storage verify``: missing, corrupt and orphaned blobs, locally and on S3."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal import ROOT
from portal.extensions import db
from portal.storage import get_storage
from portal.studies.blobkeys import new_instance_key
from portal.studies.ingest import IngestStatus, ingest_file
from portal.studies.models import Instance
from tests.ingest_support import app_with_owner, index_counts, stored_keys, write_dicom

# Ingest a batch of files in a process that dies (SIGKILL) at a chosen moment:
# between two of its blobs, once all its blobs are durable, or right after its commit.
KILLED_INGEST = """
import json, os, signal, sys
from sqlalchemy import event
from portal import create_app
from portal.auth.models import User
from portal.extensions import db
from portal.storage import local
from portal.studies.ingest import ingest_files

config, where, owner_id, *paths = sys.argv[1:]
app = create_app(json.loads(config))


def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)


with app.app_context():
    storage = app.extensions["overread_storage"]
    if where == "between_blobs":
        rename, renamed = local._rename_into_place, []

        def rename_one_then_die(path, target):
            if renamed:
                die()
            renamed.append(rename(path, target))
            return renamed[-1]

        local._rename_into_place = rename_one_then_die
    elif where == "after_blobs":
        put_files = storage.put_files
        storage.put_files = lambda blobs, **kwargs: (put_files(blobs, **kwargs), die())
    else:
        indexed = []

        def note_rows(conn, cursor, statement, *args):
            if statement.startswith("INSERT INTO instances"):
                indexed.append(statement)

        event.listen(db.engine, "before_cursor_execute", note_rows)
        event.listen(db.session(), "after_commit", lambda session: indexed and die())
    ingest_files(paths, db.session.get(User, int(owner_id)), via="test")
"""
OTHER_STUDY = "1.2.826.0.1.3680043.8.498.2"


@pytest.fixture
def app(make_app, request, tmp_path):
    """The conftest app, with its spool folder inside the test's temporary folder."""
    return make_app(getattr(request, "param", "sqlite"), SPOOL_DIR=str(tmp_path / "spool"))


@pytest.fixture
def stored(app, create_user, tmp_path):
    """Ingest three files; return their instance ids and storage keys, in order."""
    owner = create_user()
    with app.app_context():
        for n in range(3):
            result = ingest_file(write_dicom(tmp_path / f"{n}.dcm", InstanceNumber=n), owner)
            assert result.status is IngestStatus.ACCEPTED
        return db.session.execute(select(Instance.id, Instance.storage_key)).all()


def verify(app, *args: str):
    return app.test_cli_runner().invoke(args=["storage", "verify", *args])


def test_a_sound_store_passes(app, stored):
    result = verify(app)
    assert result.exit_code == 0, result.output
    assert "3 instance blobs checked, 0 missing, 0 corrupt, 0 orphaned" in result.output


def test_a_corrupt_blob_is_reported(app, stored, tmp_path):
    (instance_id, key), *_ = stored
    blob = tmp_path / "storage" / key
    blob.write_bytes(blob.read_bytes()[:-1] + b"\x01")
    result = verify(app)
    assert result.exit_code == 1
    assert f"corrupt: instance {instance_id} blob {key}" in result.output
    assert "1 corrupt" in result.output


def test_a_missing_blob_is_reported(app, stored):
    instance_id, key = stored[1]
    with app.app_context():
        get_storage().delete(key)
    result = verify(app, "--repair-orphans")
    assert result.exit_code == 1
    assert f"missing: instance {instance_id} blob {key}" in result.output
    with app.app_context():
        assert index_counts()["instances"] == 3  # repairing orphans touches nothing else


@pytest.mark.parametrize(
    ("where", "indexed", "orphaned"),
    [("between_blobs", 0, 1), ("after_blobs", 0, 3), ("after_commit", 3, 0)],
)
def test_a_killed_batch_leaves_no_half_instance_and_orphans_repair_removes(
    app, stored, create_user, tmp_path, where, indexed, orphaned
):
    owner = create_user("physician")
    paths = [
        write_dicom(tmp_path / f"killed{n}.dcm", StudyInstanceUID=OTHER_STUDY, InstanceNumber=n)
        for n in range(3)
    ]
    config = {
        key: app.config[key]
        for key in ("TESTING", "SECRET_KEY", "SQLALCHEMY_DATABASE_URI", "STORAGE_URL", "SPOOL_DIR")
    }
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            KILLED_INGEST,
            json.dumps(config),
            where,
            str(owner.id),
            *map(str, paths),
        ],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    with app.app_context():
        assert index_counts()["instances"] == 3 + indexed
        indexed_keys = set(db.session.scalars(select(Instance.storage_key)))
        orphans = sorted(set(stored_keys()) - indexed_keys)
    assert len(orphans) == orphaned

    fresh = verify(app)
    assert fresh.exit_code == 0
    assert all(f"left alone: {orphan}" in fresh.output for orphan in orphans)
    reported = verify(app, "--grace-minutes", "0")
    assert reported.exit_code == (1 if orphans else 0)
    assert all(f"orphan: {orphan}" in reported.output for orphan in orphans)
    repaired = verify(app, "--repair-orphans", "--grace-minutes", "0")
    assert repaired.exit_code == 0
    assert all(f"orphan removed: {orphan}" in repaired.output for orphan in orphans)
    with app.app_context():
        assert stored_keys() == sorted(indexed_keys)
    assert verify(app).exit_code == 0


def test_orphans_age_out_of_their_grace_period(app, stored, frozen_clock, tmp_path):
    with app.app_context():
        orphan = new_instance_key()
        get_storage().put_file(orphan, write_dicom(tmp_path / "orphan.dcm"))
    assert verify(app, "--repair-orphans").exit_code == 0
    frozen_clock.advance(timedelta(minutes=61))
    result = verify(app, "--repair-orphans")
    assert result.exit_code == 0 and f"orphan removed: {orphan}" in result.output
    with app.app_context():
        assert orphan not in stored_keys()


def test_blobs_outside_the_instance_prefix_are_not_ours(app, stored, tmp_path):
    other = tmp_path / "report.pdf"
    other.write_bytes(b"%PDF-1.7")
    with app.app_context():
        get_storage().put_file("reports/2026/report.pdf", other)
    result = verify(app, "--repair-orphans", "--grace-minutes", "0")
    assert result.exit_code == 0 and "report.pdf" not in result.output
    with app.app_context():
        assert get_storage().exists("reports/2026/report.pdf")


def test_ingest_and_verify_on_s3(make_app, s3_server, tmp_path):
    bucket = s3_server.create_bucket()
    app, owner = app_with_owner(
        make_app, tmp_path, STORAGE_URL=f"s3://{bucket}/x", S3_ENDPOINT_URL=s3_server.endpoint
    )
    path = write_dicom(tmp_path / "a.dcm", preamble=b"MZ" + bytes(126))
    with app.app_context():
        assert ingest_file(path, owner).status is IngestStatus.ACCEPTED
        assert ingest_file(path, owner).status is IngestStatus.DUPLICATE
        key = db.session.scalar(select(Instance.storage_key))
    s3 = s3_server.client()
    stored = s3.get_object(Bucket=bucket, Key=f"x/{key}")
    assert stored["ServerSideEncryption"] == "AES256"
    assert stored["Body"].read() == bytes(128) + path.read_bytes()[128:]
    assert verify(app).exit_code == 0

    s3.put_object(Bucket=bucket, Key=f"x/{key}", Body=b"not what was stored")
    s3.put_object(Bucket=bucket, Key="x/instances/00/19990101T000000Z-stray", Body=b"x")
    result = verify(app, "--repair-orphans")
    assert result.exit_code == 1
    assert "corrupt: instance 1" in result.output
    assert "orphan removed: instances/00/19990101T000000Z-stray" in result.output
    remaining = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [item["Key"] for item in remaining] == [f"x/{key}"]
