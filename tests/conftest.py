"""Shared fixtures: apps on SQLite or real PostgreSQL, users, sign-in helpers."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pyotp
import pytest
from flask_migrate import upgrade

import bot
from portal import clock, create_app
from portal.auth import operations
from portal.auth.models import User
from portal.extensions import db
from tests import harness
from tests.fakes.slack import fake_slack  # noqa: F401 - a fixture
from tests.fakes.twilio import fake_twilio  # noqa: F401 - a fixture

PASSWORD = "correct horse battery"
os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="overread-xdg-"))
os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture(autouse=True)
def _no_outside_settings(monkeypatch):
    """Keep a developer's own OVERREAD_* settings (a real SMTP host, say) out of tests."""
    for name in list(os.environ):
        if name.startswith("OVERREAD_") and name != "OVERREAD_TEST_REQUIRE_ALL":
            monkeypatch.delenv(name)


def pytest_collection_modifyitems(items):
    """Mark every test that runs on the real PostgreSQL server."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if "postgres" in getattr(item, "fixturenames", ()) or (
            callspec and callspec.params.get("app") == "postgresql"
        ):
            item.add_marker(pytest.mark.postgres)


# --- real servers for the whole session ------------------------------------------
@pytest.fixture(scope="session")
def postgres(tmp_path_factory) -> Iterator[harness.PostgresServer]:
    server = harness.PostgresServer(tmp_path_factory.mktemp("postgres"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[harness.S3Server]:
    server = harness.S3Server(tmp_path_factory.mktemp("s3"))
    yield server
    server.stop()


@pytest.fixture
def smtp():
    with harness.smtp_server() as (port, inbox):
        yield port, inbox


# --- apps ---------------------------------------------------------------------------
def base_config(tmp_path: Path, database_url: str) -> dict:
    return {
        "TESTING": True,
        "SECRET_KEY": "test-secret-key-that-is-long-enough-0123456789",
        "SQLALCHEMY_DATABASE_URI": database_url,
        "STORAGE_URL": (tmp_path / "storage").as_uri(),
        "SPOOL_DIR": str(tmp_path / "spool"),
        "RENDER_CACHE_DIR": str(tmp_path / "render-cache"),
        "BASE_URL": "http://127.0.0.1:5000",
        "ARGON2_TIME_COST": 1,
        "ARGON2_MEMORY_KIB": 8192,
        "LOGIN_RATE_LIMIT": "1000 per minute",
        "DISPATCH_BACKOFF_SECONDS": 30,
    }


@pytest.fixture
def make_app(tmp_path, request) -> Callable:
    """Return a factory: ``make_app(backend="sqlite", **config)`` -> migrated app."""
    created = []

    def factory(backend: str = "sqlite", **overrides):
        if backend == "postgresql":
            url = request.getfixturevalue("postgres").create_database()
        else:
            url = f"sqlite:///{tmp_path / f'overread-{len(created)}.db'}"
        app = bot.init_app(create_app({**base_config(tmp_path, url), **overrides}))
        with app.app_context():
            upgrade()
        created.append(app)
        return app

    yield factory
    for app in created:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def app(make_app, request):
    """A migrated app; parametrize indirectly with "postgresql" to use the real server.

    No app context is held open: requests made through the test client must
    each get their own ``g``. Use ``with app.app_context():`` to reach the database.
    """
    return make_app(getattr(request, "param", "sqlite"))


@pytest.fixture
def paged_app(make_app, request):
    """An app whose Slack and Twilio clients talk to the local fakes over HTTP."""
    fakes = [request.getfixturevalue(name) for name in ("fake_slack", "fake_twilio")]
    config = {key: value for fake in fakes for key, value in fake.config().items()}
    return make_app(getattr(request, "param", "sqlite"), **config)


@pytest.fixture
def live_url(app):
    """Serve the test's app over real HTTP on loopback; links in messages point at it."""
    with harness.live_server(app) as url:
        app.config["BASE_URL"] = url
        yield url


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def frozen_clock():
    """Pin the app's clock; ``frozen_clock.set(dt)`` / ``.advance(timedelta)``."""

    class Frozen:
        def __init__(self) -> None:
            self.moment = clock.now().replace(microsecond=0)
            clock.freeze(self.moment)

        def advance(self, delta) -> None:
            self.set(self.moment + delta)

        def set(self, moment) -> None:
            self.moment = moment
            clock.freeze(moment)

    frozen = Frozen()
    yield frozen
    clock.freeze(None)


# --- users ----------------------------------------------------------------------
@pytest.fixture
def create_user(app) -> Callable[..., User]:
    """Factory: ``create_user(role="patient", email=None, totp=False)``."""
    count = iter(range(1, 10_000))

    def factory(
        role: str = "patient",
        email: str | None = None,
        password: str = PASSWORD,
        totp: bool | None = None,
        name: str | None = None,
    ) -> User:
        email = email or f"{role}{next(count)}@example.org"
        with app.app_context():
            user = operations.create_user(email, name or f"Test {role.title()}", role, password)
            if totp if totp is not None else role in ("radiologist", "admin"):
                user.totp_secret = pyotp.random_base32()
                user.totp_enabled_at = clock.now()
            db.session.commit()
            db.session.refresh(user)
            db.session.expunge(user)
        return user

    return factory


CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


def csrf_token(client, path: str = "/login") -> str:
    """Return the CSRF token of ``client``'s session, read from a page's form."""
    html = client.get(path).get_data(as_text=True)
    match = CSRF.search(html) or re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def totp_now(user: User) -> str:
    return pyotp.TOTP(user.totp_secret).at(clock.now())


class AuthActions:
    """Sign in and out through the real forms, second factor included."""

    def __init__(self, client) -> None:
        self.client = client

    def login(self, user: User, password: str = PASSWORD, follow: bool = True):
        response = self.client.post(
            "/login",
            data={"email": user.email, "password": password, "csrf_token": csrf_token(self.client)},
        )
        if (
            user.totp_enrolled
            and response.status_code == 302
            and response.headers["Location"].endswith("/login/code")
        ):
            response = self.client.post(
                "/login/code",
                data={"code": totp_now(user), "csrf_token": csrf_token(self.client, "/login/code")},
            )
        return response

    def logout(self):
        return self.client.post("/logout", data={"csrf_token": csrf_token(self.client, "/")})


@pytest.fixture
def auth(client) -> AuthActions:
    return AuthActions(client)


@pytest.fixture
def post_form(client) -> Callable:
    """``post_form(path, data, page=path)``: POST with the session's CSRF token."""

    def post(path: str, data: dict | None = None, page: str | None = None, **kwargs):
        token = csrf_token(client, page or path)
        return client.post(path, data={**(data or {}), "csrf_token": token}, **kwargs)

    return post
