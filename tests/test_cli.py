"""Command-line interfaces: ``flask users ...`` and ``flask demo``."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
from sqlalchemy import select

from portal import ROOT, clock
from portal.auth.api_tokens import user_for_api_token
from portal.auth.models import ApiToken, User
from portal.cases.models import Case
from portal.demo import DEMO_ACCOUNTS, DEMO_PIN
from portal.extensions import db
from portal.links.pin import pin_matches
from portal.oncall.models import PagingProfile, Schedule
from portal.oncall.schedules import on_call
from tests.conftest import PASSWORD, csrf_token


def create(runner, email: str, role: str, password: str | None = PASSWORD, *options: str):
    """Run ``flask users create``; ``password=None`` leaves out ``--password-stdin``."""
    args = ["users", "create", email, "--role", role, *options]
    if password is None:
        return runner.invoke(args=args)
    return runner.invoke(args=[*args, "--password-stdin"], input=f"{password}\n")


def sign_in(client, email: str, password: str) -> int:
    data = {"email": email, "password": password, "csrf_token": csrf_token(client)}
    return client.post("/login", data=data).status_code


def find(app, email: str) -> User | None:
    with app.app_context():
        user = db.session.scalars(select(User).where(User.email == email)).first()
        if user is not None:
            db.session.expunge(user)
        return user


# --- flask users create ---------------------------------------------------------
def test_create_reads_the_password_from_stdin(app, runner, client):
    result = create(runner, "Dr.Who@Example.org", "physician", PASSWORD, "--name", "Dr Who")
    assert result.exit_code == 0, result.output
    assert "created physician dr.who@example.org" in result.output
    user = find(app, "dr.who@example.org")
    assert (user.role, user.name) == ("physician", "Dr Who")
    assert sign_in(client, "dr.who@example.org", PASSWORD) == 302


@pytest.mark.parametrize(
    ("email", "role", "password", "message"),
    [
        ("taken@example.org", "patient", PASSWORD, "already exists"),
        ("short@example.org", "patient", "short", "at least 10 characters"),
        ("nopass@example.org", "patient", None, "--password-stdin"),
        ("badrole@example.org", "wizard", PASSWORD, "'wizard' is not one of"),
        ("not-an-email", "patient", PASSWORD, "not a valid email address"),
    ],
)
def test_create_refuses(app, runner, create_user, email, role, password, message):
    create_user(email="taken@example.org")
    result = create(runner, email, role, password)
    assert result.exit_code != 0
    assert message in result.output
    if email != "taken@example.org":
        assert find(app, email) is None


# --- flask users token ----------------------------------------------------------
def test_token_is_printed_last_and_stored_hashed(app, runner, create_user):
    user = create_user("physician")
    result = runner.invoke(args=["users", "token", user.email])
    assert result.exit_code == 0, result.output
    token = result.output.splitlines()[-1]
    assert token.startswith("ovr_") and len(token) > 40
    with app.app_context():
        stored = db.session.scalars(select(ApiToken)).one()
        assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert token not in (stored.token_hash, stored.name, stored.prefix)
        assert user_for_api_token(token).id == user.id


@pytest.mark.parametrize("email", ["nobody@example.org", "gone@example.org"])
def test_token_refuses_unknown_or_inactive_accounts(app, runner, create_user, email):
    gone = create_user(email="gone@example.org")
    with app.app_context():
        db.session.get(User, gone.id).active = False
        db.session.commit()
    result = runner.invoke(args=["users", "token", email])
    assert result.exit_code != 0
    assert f"no active account for {email}" in result.output


def test_real_flask_command_creates_a_user_and_a_token(tmp_path):
    database = tmp_path / "cli.db"
    env = {key: value for key, value in os.environ.items() if not key.startswith("OVERREAD_")}
    env.update(
        OVERREAD_DATABASE_URL=f"sqlite:///{database}",
        OVERREAD_STORAGE_URL=(tmp_path / "blobs").as_uri(),
        OVERREAD_SECRET_KEY="a-secret-key-for-the-subprocess-test-0123",
        OVERREAD_ARGON2_MEMORY_KIB="8192",
        OVERREAD_ARGON2_TIME_COST="1",
    )
    flask = [str(Path(sys.executable).with_name("flask")), "--app", "app"]

    def run(*args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [*flask, *args], input=stdin, capture_output=True, text=True, cwd=ROOT, env=env,
            timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    run("db", "upgrade")
    account = ["rad@example.org", "--role", "radiologist", "--password-stdin"]
    run("users", "create", *account, stdin=f"{PASSWORD}\n")
    token = run("users", "token", "rad@example.org").splitlines()[-1]
    assert token.startswith("ovr_") and " " not in token
    with closing(sqlite3.connect(database)) as connection:
        (stored,) = connection.execute("SELECT token_hash FROM api_tokens").fetchone()
    assert stored == hashlib.sha256(token.encode()).hexdigest()


# --- flask demo -----------------------------------------------------------------
def test_demo_prints_logins_and_is_idempotent(app, runner, client):
    outputs = []
    for _ in range(2):
        result = runner.invoke(args=["demo"])
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
        for email, _, role, password in DEMO_ACCOUNTS:
            assert f"{role.value}" in result.output
            assert email in result.output and password in result.output
    with app.app_context():
        assert len(db.session.scalars(select(User)).all()) == 4
        (case,) = db.session.scalars(select(Case)).all()  # one sample case, made once
        assert case.state == "offered" and case.studies
        assert f"Sample case {case.number}" in outputs[0]
        assert "Sample case" not in outputs[1]
    email, _, _, password = DEMO_ACCOUNTS[0]
    assert sign_in(client, email, password) == 302  # the printed login works on the form
    with app.app_context():
        (schedule,) = db.session.scalars(select(Schedule)).all()
        (shift,) = on_call(schedule, clock.now())
        assert shift.user.email == DEMO_ACCOUNTS[2][0]
        assert pin_matches(db.session.get(PagingProfile, shift.user.id), DEMO_PIN)
    assert f"PIN {DEMO_PIN}" in outputs[0]


def test_demo_refuses_to_run_in_production(make_app, monkeypatch):
    app = make_app(ENV_NAME="production")
    result = app.test_cli_runner().invoke(args=["demo"])
    assert result.exit_code != 0
    assert "production" in result.output
    assert find(app, DEMO_ACCOUNTS[-1][0]) is None
