"""``GET /healthz`` answers 200 only when the database and the blob store do."""

from __future__ import annotations

import socket
import time

import pytest

from portal import create_app, database
from portal.extensions import limiter
from tests.conftest import base_config
from tests.harness import free_port


def health(app) -> tuple[int, dict]:
    response = app.test_client().get("/healthz")
    return response.status_code, response.json


def test_ok_on_sqlite_and_a_folder(app):
    assert health(app) == (200, {"status": "ok", "database": "ok", "storage": "ok"})


@pytest.mark.postgres
def test_ok_on_postgres_and_s3(make_app, s3_server):
    app = make_app(
        "postgresql",
        STORAGE_URL=f"s3://{s3_server.create_bucket()}/blobs",
        S3_ENDPOINT_URL=s3_server.endpoint,
    )
    assert health(app) == (200, {"status": "ok", "database": "ok", "storage": "ok"})


def test_missing_bucket_is_unavailable(make_app, s3_server):
    app = make_app(STORAGE_URL="s3://no-such-bucket/blobs", S3_ENDPOINT_URL=s3_server.endpoint)
    assert health(app) == (503, {"status": "unavailable", "database": "ok", "storage": "error"})


def test_unwritable_folder_is_unavailable(app, tmp_path):
    tmp = tmp_path / "storage" / ".tmp"
    tmp.rmdir()
    tmp.write_text("a file where the scratch folder should be")
    assert health(app)[0] == 503


def test_unreachable_database_is_unavailable(tmp_path):
    url = f"postgresql+psycopg://overread@127.0.0.1:{free_port()}/overread"
    app = create_app(base_config(tmp_path, url))
    assert health(app) == (503, {"status": "unavailable", "database": "error", "storage": "ok"})
    assert health(app)[0] == 503  # and it keeps answering


def test_is_not_rate_limited(make_app):
    app = make_app(RATELIMIT_DEFAULT="2 per minute")
    try:
        assert [health(app)[0] for _ in range(5)] == [200] * 5
    finally:
        # Flask-Limiter keeps default limits on its one shared object: undo them.
        limiter.limit_manager.set_default_limits([])


def test_silent_database_fails_fast(tmp_path, monkeypatch):
    monkeypatch.setattr(database, "CONNECT_TIMEOUT_SECONDS", 2)
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        url = f"postgresql+psycopg://overread@127.0.0.1:{silent.getsockname()[1]}/overread"
        app = create_app(base_config(tmp_path, url))
        started = time.monotonic()
        assert health(app)[0] == 503
    assert time.monotonic() - started < 10
