"""Blob storage: a local folder and a real S3-compatible server over HTTP."""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from botocore.exceptions import ClientError, NoCredentialsError

from portal.errors import StorageError
from portal.storage import local as local_module
from portal.storage import open_storage
from portal.storage import s3 as s3_module
from portal.storage.base import BlobNotFound
from portal.storage.local import LocalStorage
from portal.storage.s3 import S3Storage

MiB = 1024 * 1024


# --- helpers ------------------------------------------------------------------
@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path):
    if request.param == "local":
        return LocalStorage(str(tmp_path / "blobs"))
    server = request.getfixturevalue("s3_server")
    return S3Storage(server.create_bucket(), prefix="studies", endpoint_url=server.endpoint)


@pytest.fixture
def s3(s3_server) -> S3Storage:
    return S3Storage(s3_server.create_bucket(), prefix="blobs", endpoint_url=s3_server.endpoint)


def a_file(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / f"upload-{uuid.uuid4().hex}"
    path.write_bytes(content)
    return path


def read(storage, key: str) -> bytes:
    with storage.open(key) as stream:
        return stream.read()


def fail_on_part(storage: S3Storage, part_number: int) -> None:
    """Make the server "refuse" one part of every multipart upload."""

    def refuse(request, **kwargs):
        if parse_qs(urlsplit(request.url).query)["partNumber"] == [str(part_number)]:
            raise ClientError(
                {"Error": {"Code": "InternalError", "Message": "injected"}}, "UploadPart"
            )

    storage.client.meta.events.register("before-send.s3.UploadPart", refuse)


# --- every backend --------------------------------------------------------------
def test_put_open_exists_delete(storage, tmp_path):
    key = "1.2.840/1.2.841/instance.dcm"
    assert not storage.exists(key)
    storage.put_file(key, a_file(tmp_path, b"DICM" * 100))
    assert storage.exists(key)
    assert read(storage, key) == b"DICM" * 100
    storage.put_file(key, a_file(tmp_path, b"replaced"))
    assert read(storage, key) == b"replaced"
    storage.delete(key)
    assert not storage.exists(key)
    storage.delete(key)  # deleting again is fine
    with pytest.raises(BlobNotFound):
        storage.open(key)


def test_iter_keys(storage, tmp_path):
    for key in ("a/1", "a/2", "b/1"):
        storage.put_file(key, a_file(tmp_path, key.encode()))
    assert sorted(storage.iter_keys()) == ["a/1", "a/2", "b/1"]
    assert sorted(storage.iter_keys("a/")) == ["a/1", "a/2"]
    assert list(storage.iter_keys("c/")) == []


@pytest.mark.parametrize(
    "key", ["../x", "/abs", "a//b", "a/../b", ".hidden", "a/", "", "a\\b", "x" * 513]
)
def test_unsafe_keys_are_refused(storage, tmp_path, key):
    upload = a_file(tmp_path, b"x")
    for action in (
        lambda: storage.put_file(key, upload),
        lambda: storage.open(key),
        lambda: storage.exists(key),
        lambda: storage.delete(key),
    ):
        with pytest.raises(StorageError, match="unsafe storage key"):
            action()


@pytest.mark.parametrize("move", [False, True], ids=["copy", "move"])
def test_put_files_stores_a_batch(storage, tmp_path, move):
    blobs = [(f"batch/{n}", a_file(tmp_path, f"blob {n}".encode())) for n in range(3)]
    storage.put_files(blobs, move=move)
    assert [read(storage, key) for key, _ in blobs] == [b"blob 0", b"blob 1", b"blob 2"]


def test_prepare_files_is_only_a_hint(storage, tmp_path):
    sources = [a_file(tmp_path, f"blob {n}".encode()) for n in range(2)]
    storage.prepare_files([*sources, tmp_path / "gone"])  # a file no longer there is no error
    storage.put_files([(f"k{n}", source) for n, source in enumerate(sources)], move=True)
    assert read(storage, "k1") == b"blob 1"


def test_check(storage):
    storage.check()


# --- the local folder -----------------------------------------------------------
def test_failed_local_put_leaves_nothing(tmp_path, monkeypatch):
    storage = LocalStorage(str(tmp_path / "blobs"))
    storage.put_file("k", a_file(tmp_path, b"old"))

    def copy_half(src, dst, length=0):
        dst.write(src.read(3))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "copyfileobj", copy_half)
    for key in ("k", "new"):
        with pytest.raises(StorageError, match="No space left"):
            storage.put_file(key, a_file(tmp_path, b"new content"))
    assert read(storage, "k") == b"old"
    assert not storage.exists("new")
    assert list(storage.iter_keys()) == ["k"]
    assert list((tmp_path / "blobs" / ".tmp").iterdir()) == []


def test_local_batch_moves_files_in_and_syncs_each_folder_once(tmp_path, monkeypatch):
    storage = LocalStorage(str(tmp_path / "blobs"))
    synced = []
    real_sync = local_module._fsync_dir
    monkeypatch.setattr(
        local_module, "_fsync_dir", lambda folder: (synced.append(folder), real_sync(folder))
    )
    sources = [a_file(tmp_path, f"blob {n}".encode()) for n in range(3)]
    storage.put_files([(f"new/{n}", source) for n, source in enumerate(sources)], move=True)
    assert not any(source.exists() for source in sources)
    assert read(storage, "new/2") == b"blob 2"
    assert os.stat(tmp_path / "blobs" / "new" / "0").st_mode & 0o777 == 0o600
    assert sorted(synced) == [tmp_path / "blobs", tmp_path / "blobs" / "new"]


def test_local_batch_syncs_every_file_before_naming_any(tmp_path, monkeypatch):
    storage = LocalStorage(str(tmp_path / "blobs"))
    events = []
    real_sync, real_rename = local_module._sync_file, local_module._rename_into_place

    def sync_file(key, path, target):
        events.append("sync")
        real_sync(key, path, target)

    def rename_into_place(path, target):
        events.append("rename")
        return real_rename(path, target)

    monkeypatch.setattr(local_module, "_sync_file", sync_file)
    monkeypatch.setattr(local_module, "_rename_into_place", rename_into_place)
    sources = [a_file(tmp_path, f"blob {n}".encode()) for n in range(3)]
    storage.put_files([(f"k{n}", source) for n, source in enumerate(sources)], move=True)
    assert events == ["sync"] * 3 + ["rename"] * 3


def test_local_batch_names_the_blob_that_could_not_be_synced(tmp_path, monkeypatch):
    storage = LocalStorage(str(tmp_path / "blobs"))
    sources = [a_file(tmp_path, f"blob {n}".encode()) for n in range(3)]
    real_fsync, synced = os.fsync, []

    def fsync(fd):
        if len(synced) == 1:
            raise OSError(5, "Input/output error")
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(local_module.os, "fsync", fsync)
    monkeypatch.setattr(local_module, "SYNC_THREADS", 1)
    with pytest.raises(StorageError, match="could not store blob 'k1': Input/output error"):
        storage.put_files([(f"k{n}", source) for n, source in enumerate(sources)], move=True)
    assert list(storage.iter_keys()) == []  # nothing was named before every file was synced


def test_local_prepare_files_syncs_ahead_in_the_background(tmp_path, monkeypatch):
    storage = LocalStorage(str(tmp_path / "blobs"))
    sources = [a_file(tmp_path, f"blob {n}".encode()) for n in range(3)]
    real_fsync, synced, all_synced = os.fsync, [], threading.Event()

    def fsync(fd):
        real_fsync(fd)
        synced.append((os.fstat(fd).st_ino, threading.current_thread().name))
        if len(synced) == len(sources):
            all_synced.set()

    monkeypatch.setattr(local_module.os, "fsync", fsync)
    inodes = sorted(source.stat().st_ino for source in sources)
    storage.prepare_files(sources)
    assert all_synced.wait(10)
    assert sorted(inode for inode, _ in synced) == inodes
    assert all(name.startswith("blob-sync-ahead") for _, name in synced)
    storage.put_files([(f"k{n}", source) for n, source in enumerate(sources)], move=True)
    assert read(storage, "k2") == b"blob 2"
    files = [inode for inode, _ in synced if inode in inodes]  # not the folders
    assert len(files) == 2 * len(sources)  # put_files synced each again itself


def test_local_move_across_file_systems_copies(tmp_path, monkeypatch):
    storage = LocalStorage(str(tmp_path / "blobs"))
    source = a_file(tmp_path, b"from another disk")
    real_replace = os.replace

    def replace(src, dst):
        if Path(src) == source:
            raise OSError(18, "Invalid cross-device link")
        real_replace(src, dst)

    monkeypatch.setattr(local_module.os, "replace", replace)
    storage.put_files([("k", source)], move=True)
    assert read(storage, "k") == b"from another disk"
    assert list((tmp_path / "blobs" / ".tmp").iterdir()) == []


def test_local_key_that_is_a_folder_is_not_a_blob(tmp_path):
    storage = LocalStorage(str(tmp_path / "blobs"))
    storage.put_file("a/b", a_file(tmp_path, b"x"))
    assert not storage.exists("a")
    with pytest.raises(BlobNotFound):
        storage.open("a")
    storage.delete("a")
    with pytest.raises(StorageError):
        storage.put_file("a", a_file(tmp_path, b"y"))
    assert read(storage, "a/b") == b"x"


def test_local_check_survives_concurrent_probes(tmp_path):
    storage, errors = LocalStorage(str(tmp_path / "blobs")), []

    def probe() -> None:
        for _ in range(200):
            try:
                storage.check()
            except StorageError as exc:
                errors.append(exc)

    threads = [threading.Thread(target=probe) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_local_check_fails_when_unwritable(tmp_path):
    storage = LocalStorage(str(tmp_path / "blobs"))
    (tmp_path / "blobs" / ".tmp").rmdir()
    (tmp_path / "blobs" / ".tmp").write_text("not a folder")
    with pytest.raises(StorageError, match="not writable"):
        storage.check()


# --- S3 -------------------------------------------------------------------------
def test_s3_keys_live_under_the_prefix(s3, s3_server, tmp_path):
    s3.put_file("x/1", a_file(tmp_path, b"1"))
    listed = s3_server.client().list_objects_v2(Bucket=s3.bucket)["Contents"]
    assert [item["Key"] for item in listed] == ["blobs/x/1"]
    whole_bucket = S3Storage(s3.bucket, endpoint_url=s3_server.endpoint)
    assert list(whole_bucket.iter_keys()) == ["blobs/x/1"]
    assert list(S3Storage(s3.bucket, "other", s3_server.endpoint).iter_keys()) == []


def test_s3_requests_server_side_encryption(s3, s3_server, tmp_path):
    s3.put_file("k", a_file(tmp_path, b"secret"))
    head = s3_server.client().head_object(Bucket=s3.bucket, Key="blobs/k")
    assert head["ServerSideEncryption"] == "AES256"


def test_s3_encryption_can_be_turned_off(s3_server, tmp_path):
    bucket = s3_server.create_bucket()
    storage = open_storage(
        f"s3://{bucket}/p",
        {"S3_ENDPOINT_URL": s3_server.endpoint, "S3_SERVER_SIDE_ENCRYPTION": None},
    )
    storage.put_file("k", a_file(tmp_path, b"plain"))
    assert "ServerSideEncryption" not in s3_server.client().head_object(Bucket=bucket, Key="p/k")


def test_s3_multipart_upload(s3_server, tmp_path, monkeypatch):
    monkeypatch.setattr(s3_module, "MULTIPART_THRESHOLD", 5 * MiB)
    storage = S3Storage(s3_server.create_bucket(), "big", s3_server.endpoint)
    content = os.urandom(12 * MiB)
    storage.put_file("study.zip", a_file(tmp_path, content))
    assert read(storage, "study.zip") == content
    head = s3_server.client().head_object(Bucket=storage.bucket, Key="big/study.zip")
    assert head["ETag"].endswith('-3"')  # three parts
    assert head["ServerSideEncryption"] == "AES256"


def test_s3_failed_multipart_upload_leaves_nothing(s3_server, tmp_path, monkeypatch):
    monkeypatch.setattr(s3_module, "MULTIPART_THRESHOLD", 5 * MiB)
    storage = S3Storage(s3_server.create_bucket(), "big", s3_server.endpoint)
    fail_on_part(storage, 2)
    with pytest.raises(StorageError, match=r"S3 upload failed.*injected"):
        storage.put_file("study.zip", a_file(tmp_path, os.urandom(12 * MiB)))
    client = s3_server.client()
    assert "Contents" not in client.list_objects_v2(Bucket=storage.bucket)
    assert "Uploads" not in client.list_multipart_uploads(Bucket=storage.bucket)


def test_s3_missing_bucket(s3_server, tmp_path):
    storage = S3Storage("no-such-bucket", endpoint_url=s3_server.endpoint)
    with pytest.raises(StorageError, match="not reachable"):
        storage.check()
    with pytest.raises(StorageError):
        storage.put_file("k", a_file(tmp_path, b"x"))
    with pytest.raises(StorageError):
        list(storage.iter_keys())


def test_s3_client_errors_become_storage_errors(s3, tmp_path):
    s3.put_file("k", a_file(tmp_path, b"x"))

    def no_credentials(**kwargs):
        raise NoCredentialsError()

    s3.client.meta.events.register("before-send.s3", no_credentials)
    for action in (
        lambda: s3.open("k"),
        lambda: s3.exists("k"),
        lambda: list(s3.iter_keys()),
        lambda: s3.delete("k"),
        s3.check,
        lambda: s3.put_file("k", a_file(tmp_path, b"y")),
    ):
        with pytest.raises(StorageError):
            action()


# --- flask storage check ------------------------------------------------------------
def test_cli_check_on_a_folder(runner):
    result = runner.invoke(args=["storage", "check"])
    assert (result.exit_code, result.output) == (0, "storage ok\n")


def test_cli_check_on_s3(make_app, s3_server):
    app = make_app(
        STORAGE_URL=f"s3://{s3_server.create_bucket()}/p", S3_ENDPOINT_URL=s3_server.endpoint
    )
    result = app.test_cli_runner().invoke(args=["storage", "check"])
    assert (result.exit_code, result.output) == (0, "storage ok\n")


def test_cli_check_fails_on_a_missing_bucket(make_app, s3_server):
    app = make_app(STORAGE_URL="s3://no-such-bucket/p", S3_ENDPOINT_URL=s3_server.endpoint)
    result = app.test_cli_runner().invoke(args=["storage", "check"])
    assert result.exit_code != 0
    assert "no-such-bucket" in result.output
