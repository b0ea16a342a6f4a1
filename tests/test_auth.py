"""Accounts: registration, sign-in, lockout, second factor, passwords, resets, API tokens."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta
from html import unescape as html_unescape
from urllib.parse import unquote, urlsplit

import pyotp
import pytest
from sqlalchemy import select

from portal import clock
from portal.audit.models import AuditEvent
from portal.auth.api_tokens import user_for_api_token
from portal.auth.models import AccountLink, ApiToken, User
from portal.auth.operations import find_user
from portal.extensions import db
from portal.notifications.models import Notification
from tests.conftest import PASSWORD, AuthActions, csrf_token, totp_now

NEW_PASSWORD = "a brand new passphrase"
BOTH_DATABASES = pytest.mark.parametrize("app", ["sqlite", "postgresql"], indirect=True)


# --- helpers ------------------------------------------------------------------------
def text(response) -> str:
    return response.get_data(as_text=True)


def location(response) -> str:
    """Return the path of a redirect's target."""
    assert response.status_code in (302, 303), (response.status_code, text(response)[:500])
    return urlsplit(response.headers["Location"]).path


def field_errors(html: str, field_id: str) -> str:
    """Return the error text shown next to the form field ``field_id`` ("" if none)."""
    match = re.search(rf'id="{field_id}-errors"[^>]*>(.*?)</ul>', html, re.S)
    return re.sub(r"<[^>]+>", " ", match.group(1)).strip() if match else ""


def post(client, path: str, data: dict, page: str | None = None):
    """POST ``data`` with the CSRF token of ``client``'s session."""
    return client.post(path, data={**data, "csrf_token": csrf_token(client, page or path)})


def is_signed_in(client) -> bool:
    return client.get("/account/").status_code == 200


def audit_events(app, action: str) -> list[dict]:
    with app.app_context():
        events = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)
        ).all()
        return [
            {"actor_id": e.actor_id, "target": e.target, "details": json.loads(e.details)}
            for e in events
        ]


def load_user(app, email: str) -> User:
    with app.app_context():
        user = find_user(email)
        db.session.expunge(user)
        return user


def outbox(app, kind: str) -> list[Notification]:
    with app.app_context():
        rows = db.session.scalars(
            select(Notification).where(Notification.kind == kind).order_by(Notification.id)
        ).all()
        db.session.expunge_all()
        return rows


def link_path(notification: Notification, kind: str) -> str:
    """Return the path of the ``/invite/...`` or ``/reset/...`` link in a message."""
    match = re.search(rf"https?://[^/\s]+(/{kind}/[A-Za-z0-9_\-]+)", notification.body)
    assert match, notification.body
    return match.group(1)


def password_login(client, user: User, password: str = PASSWORD):
    """Submit the password step only."""
    return post(client, "/login", {"email": user.email, "password": password})


def wrong_code(right: str) -> str:
    return f"{(int(right) + 1) % 1_000_000:06d}"


# --- registration -------------------------------------------------------------------
def register(client, **fields):
    data = {
        "name": "Ann Example",
        "email": "ann@example.org",
        "password": PASSWORD,
        "confirm": PASSWORD,
        **fields,
    }
    return post(client, "/register", data)


@BOTH_DATABASES
def test_registration_creates_a_signed_in_patient(app, client):
    response = register(client)
    assert location(response) == "/"
    assert "Hello, Ann Example" in text(client.get("/"))
    user = load_user(app, "ann@example.org")
    assert user.role == "patient" and user.password_hash.startswith("$argon2id$")
    assert [e["target"] for e in audit_events(app, "user.created")] == [f"user:{user.id}"]
    assert [e["actor_id"] for e in audit_events(app, "login.success")] == [user.id]


def test_registration_with_a_taken_email_shows_the_error_and_keeps_the_typed_values(
    app, client, create_user
):
    create_user("patient", email="ann@example.org")
    response = register(client, name="Ann Second", email="Ann@Example.org")
    html = text(response)
    assert response.status_code == 400
    assert "already exists" in field_errors(html, "email")
    assert 'value="Ann Second"' in html and 'value="Ann@Example.org"' in html
    assert not is_signed_in(client)


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"password": "too short", "confirm": "too short"}, "password", "between 10 and 128"),
        ({"confirm": "something else entirely"}, "confirm", "The two passwords differ."),
    ],
)
def test_registration_refuses_a_bad_password(app, client, fields, field, message):
    response = register(client, **fields)
    assert response.status_code == 400
    assert message in field_errors(text(response), field)
    with app.app_context():
        assert find_user("ann@example.org") is None


# --- sign-in and sign-out ------------------------------------------------------------
@BOTH_DATABASES
def test_login_and_logout(app, client, auth, create_user):
    user = create_user("patient")
    assert location(auth.login(user)) == "/"
    assert is_signed_in(client)
    assert location(auth.logout()) == "/login"
    assert not is_signed_in(client)
    assert [e["actor_id"] for e in audit_events(app, "login.success")] == [user.id]
    assert [e["actor_id"] for e in audit_events(app, "logout")] == [user.id]


def test_admin_lands_on_the_users_page(auth, create_user):
    assert location(auth.login(create_user("admin"))) == "/admin/users"


def test_wrong_password_is_refused_and_audited(app, client, create_user):
    user = create_user("patient")
    response = password_login(client, user, "not the password")
    assert response.status_code == 401
    assert field_errors(text(response), "password") == "Wrong email or password."
    assert not is_signed_in(client)
    [event] = audit_events(app, "login.failed")
    assert event["target"] == f"user:{user.id}"
    assert event["details"]["reason"] == "wrong password"


def test_unknown_email_gets_the_same_answer_as_a_wrong_password(app, client):
    response = post(client, "/login", {"email": "nobody@example.org", "password": PASSWORD})
    assert response.status_code == 401
    assert field_errors(text(response), "password") == "Wrong email or password."
    [event] = audit_events(app, "login.failed")
    assert event["target"] == "email:nobody@example.org"


def test_account_locks_after_too_many_failures(app, client, create_user):
    user = create_user("patient")
    for _ in range(app.config["LOGIN_MAX_FAILURES"]):
        assert password_login(client, user, "not the password").status_code == 401
    response = password_login(client, user)
    assert response.status_code == 401
    assert "locked" in field_errors(text(response), "password")
    assert not is_signed_in(client)
    [event] = audit_events(app, "login.locked")
    assert event["actor_id"] == user.id


def test_locked_account_opens_again_after_the_lockout_time(app, client, create_user, frozen_clock):
    user = create_user("patient")
    for _ in range(app.config["LOGIN_MAX_FAILURES"]):
        password_login(client, user, "not the password")
    frozen_clock.advance(app.config["LOGIN_LOCKOUT"] - timedelta(seconds=1))
    assert password_login(client, user).status_code == 401
    frozen_clock.advance(timedelta(seconds=2))
    assert location(password_login(client, user)) == "/"
    assert is_signed_in(client)


def test_login_posts_are_rate_limited(make_app):
    limited = make_app(LOGIN_RATE_LIMIT="3 per minute")
    client = limited.test_client()
    for _ in range(3):
        response = post(client, "/login", {"email": "x@example.org", "password": "wrong one!"})
        assert response.status_code == 401
    response = post(client, "/login", {"email": "x@example.org", "password": "wrong one!"})
    assert response.status_code == 429
    assert "Too many attempts" in text(response)
    assert "Wait a minute" in text(response)


# --- second factor -------------------------------------------------------------------
@pytest.mark.parametrize("role", ["radiologist", "admin"])
def test_staff_without_totp_are_sent_to_enrolment(client, create_user, role):
    user = create_user(role, totp=False)
    assert location(password_login(client, user)) == "/login/enrol"
    html = text(client.get("/login/enrol"))
    qr = re.search(r'src="(data:image/svg\+xml[^"]*)"', html)
    assert qr and "<svg" in unquote(html_unescape(qr.group(1)))
    assert re.search(r'id="totp-secret">[A-Z2-7]{32}<', html)
    assert not is_signed_in(client)


def enrolment_secret(client) -> str:
    return re.search(r'id="totp-secret">([A-Z2-7]+)<', text(client.get("/login/enrol"))).group(1)


def test_enrolment_refuses_a_wrong_code(app, client, create_user, frozen_clock):
    user = create_user("radiologist", totp=False)
    password_login(client, user)
    secret = enrolment_secret(client)
    response = post(
        client, "/login/enrol", {"code": wrong_code(pyotp.TOTP(secret).at(clock.now()))}
    )
    assert response.status_code == 400
    assert "does not match" in field_errors(text(response), "code")
    assert enrolment_secret(client) == secret
    assert not load_user(app, user.email).totp_enrolled
    assert not is_signed_in(client)


def test_enrolment_with_the_right_code_turns_totp_on_and_signs_in(
    app, client, create_user, frozen_clock
):
    user = create_user("radiologist", totp=False)
    password_login(client, user)
    secret = enrolment_secret(client)
    response = post(client, "/login/enrol", {"code": pyotp.TOTP(secret).at(clock.now())})
    assert location(response) == "/"
    assert is_signed_in(client)
    enrolled = load_user(app, user.email)
    assert enrolled.totp_enrolled and enrolled.totp_secret == secret
    assert [e["actor_id"] for e in audit_events(app, "totp.enrolled")] == [user.id]


@BOTH_DATABASES
def test_enrolled_user_must_pass_the_code_step(client, create_user, frozen_clock):
    user = create_user("radiologist")
    assert location(password_login(client, user)) == "/login/code"
    assert not is_signed_in(client)
    response = post(client, "/login/code", {"code": totp_now(user)})
    assert location(response) == "/"
    assert is_signed_in(client)


def test_wrong_code_is_refused(app, client, create_user, frozen_clock):
    user = create_user("radiologist")
    password_login(client, user)
    response = post(client, "/login/code", {"code": wrong_code(totp_now(user))})
    assert response.status_code == 401
    assert "not valid" in field_errors(text(response), "code")
    assert not is_signed_in(client)
    assert audit_events(app, "login.failed")


def test_a_code_cannot_be_used_twice(client, auth, create_user, frozen_clock):
    user = create_user("radiologist")
    auth.login(user)
    auth.logout()
    password_login(client, user)
    response = post(client, "/login/code", {"code": totp_now(user)})
    assert response.status_code == 401
    assert not is_signed_in(client)


def test_code_step_is_refused_while_the_account_is_locked(app, client, create_user, frozen_clock):
    user = create_user("radiologist")
    password_login(client, user)
    for _ in range(app.config["LOGIN_MAX_FAILURES"]):
        post(client, "/login/code", {"code": wrong_code(totp_now(user))})
    response = post(client, "/login/code", {"code": totp_now(user)})
    assert response.status_code == 401
    assert not is_signed_in(client)


def test_pending_second_factor_expires_after_five_minutes(client, create_user, frozen_clock):
    user = create_user("radiologist")
    password_login(client, user)
    frozen_clock.advance(timedelta(minutes=5, seconds=1))
    token = csrf_token(client)  # from /login: opening /login/code would drop the stale state
    response = client.post("/login/code", data={"code": totp_now(user), "csrf_token": token})
    assert location(response) == "/login"
    assert not is_signed_in(client)


@pytest.mark.parametrize("role", ["patient", "physician"])
def test_patients_and_physicians_have_no_code_step(client, create_user, role):
    assert location(password_login(client, create_user(role))) == "/"
    assert is_signed_in(client)


# --- password change -----------------------------------------------------------------
def change_password(client, current: str, new: str = NEW_PASSWORD):
    return post(
        client,
        "/account/password",
        {"pw-current": current, "pw-password": new, "pw-confirm": new},
        page="/account/",
    )


def test_password_change_refuses_a_wrong_current_password(app, client, auth, create_user):
    user = create_user("patient")
    auth.login(user)
    response = change_password(client, "not the password")
    assert response.status_code == 400
    assert "not right" in field_errors(text(response), "pw-current")
    assert [e["actor_id"] for e in audit_events(app, "password.change_failed")] == [user.id]
    auth.logout()
    assert location(auth.login(user)) == "/"


def test_password_change_ends_other_sessions_but_keeps_this_one(app, client, auth, create_user):
    user = create_user("patient")
    other_device = app.test_client()
    AuthActions(other_device).login(user)
    auth.login(user)
    assert location(change_password(client, PASSWORD)) == "/account/"
    assert is_signed_in(client)
    assert location(other_device.get("/account/")) == "/login"
    assert audit_events(app, "password.changed")
    auth.logout()
    assert password_login(client, user).status_code == 401
    assert location(password_login(client, user, NEW_PASSWORD)) == "/"


# --- forgotten password ----------------------------------------------------------------
def request_reset(client, email: str):
    return post(client, "/forgot", {"email": email})


def reset_link(app) -> str:
    [message] = outbox(app, "account.password_reset")
    return link_path(message, "reset")


def reset_to(client, path: str, password: str = NEW_PASSWORD):
    return post(client, path, {"password": password, "confirm": password})


def test_reset_link_goes_only_to_the_outbox(app, client, create_user):
    user = create_user("patient")
    response = request_reset(client, user.email)
    path = reset_link(app)
    raw = path.rsplit("/", 1)[1]
    assert outbox(app, "account.password_reset")[0].recipient == user.email
    assert raw not in text(response) and raw not in text(client.get("/login"))
    with app.app_context():
        [link] = db.session.scalars(select(AccountLink)).all()
        assert link.token_hash == hashlib.sha256(raw.encode()).hexdigest()
        audit_rows = [(e.target, e.details) for e in db.session.scalars(select(AuditEvent))]
    assert audit_rows and raw not in repr(audit_rows)


def test_reset_link_sets_the_password_and_ends_old_sessions(app, client, create_user):
    user = create_user("patient")
    old_device = app.test_client()
    AuthActions(old_device).login(user)
    request_reset(client, user.email)
    assert client.get(reset_link(app)).status_code == 200
    assert location(reset_to(client, reset_link(app))) == "/login"
    assert [e["actor_id"] for e in audit_events(app, "password.reset")] == [user.id]
    assert location(old_device.get("/account/")) == "/login"
    assert location(password_login(client, user, NEW_PASSWORD)) == "/"


def test_reset_link_works_once(app, client, create_user):
    user = create_user("patient")
    request_reset(client, user.email)
    path = reset_link(app)
    reset_to(client, path)
    response = client.get(path)
    assert response.status_code == 410
    assert "already been used" in text(response)


def test_reset_link_expires(app, client, create_user, frozen_clock):
    user = create_user("patient")
    request_reset(client, user.email)
    frozen_clock.advance(app.config["RESET_LIFETIME"] + timedelta(seconds=1))
    response = client.get(reset_link(app))
    assert response.status_code == 410
    assert "expired" in text(response)


def test_a_new_password_withdraws_older_reset_links(app, client, create_user):
    user = create_user("patient")
    request_reset(client, user.email)
    request_reset(client, user.email)
    older, newer = (link_path(m, "reset") for m in outbox(app, "account.password_reset"))
    reset_to(client, newer)
    response = client.get(older)
    assert response.status_code == 410
    assert "withdrawn" in text(response)


def test_password_change_withdraws_open_reset_links(app, client, auth, create_user):
    user = create_user("patient")
    request_reset(app.test_client(), user.email)
    auth.login(user)
    change_password(client, PASSWORD)
    assert app.test_client().get(reset_link(app)).status_code == 410


def test_unknown_reset_token_is_refused_and_audited(app, client):
    response = client.get("/reset/not-a-real-token")
    assert response.status_code == 410
    [event] = audit_events(app, "reset.refused")
    assert event["details"]["reason"] == "is not valid"


def test_forgot_password_answers_the_same_for_unknown_and_known_emails(app, client, create_user):
    user = create_user("patient")
    known = request_reset(client, user.email)
    known_page = text(client.get(location(known)))
    unknown = request_reset(client, "nobody@example.org")
    unknown_page = text(client.get(location(unknown)))
    assert (unknown.status_code, location(unknown)) == (known.status_code, location(known))
    assert "a reset link is on its way" in known_page
    assert "a reset link is on its way" in unknown_page
    assert [m.recipient for m in outbox(app, "account.password_reset")] == [user.email]


# --- API tokens ------------------------------------------------------------------------
def create_token(client, name: str = "PACS bridge") -> str:
    response = post(client, "/account/tokens", {"tok-name": name}, page="/account/")
    assert response.status_code == 200
    return re.search(r'id="new-token">([^<]+)<', text(response)).group(1)


def test_api_token_is_shown_once_and_stored_as_its_sha256(app, client, auth, create_user):
    user = create_user("physician")
    auth.login(user)
    raw = create_token(client)
    assert raw not in text(client.get("/account/"))
    with app.app_context():
        [token] = db.session.scalars(select(ApiToken)).all()
        assert token.token_hash == hashlib.sha256(raw.encode()).hexdigest()
        assert token.user_id == user.id and raw not in (token.prefix, token.name)


def test_api_tokens_are_listed_on_the_account_page(client, auth, create_user):
    auth.login(create_user("physician"))
    raw = create_token(client, "PACS bridge")
    html = text(client.get("/account/"))
    assert "PACS bridge" in html and raw[:10] in html and "Revoke" in html


def test_revoked_api_token_is_no_longer_accepted(app, client, auth, create_user):
    user = create_user("physician")
    auth.login(user)
    raw = create_token(client)
    with app.app_context():
        assert user_for_api_token(raw).id == user.id
        token_id = db.session.scalars(select(ApiToken.id)).one()
    response = post(client, f"/account/tokens/{token_id}/revoke", {}, page="/account/")
    assert location(response) == "/account/"
    assert "revoked" in text(client.get("/account/"))
    with app.app_context():
        assert user_for_api_token(raw) is None
    assert audit_events(app, "api_token.revoked")


def test_someone_elses_api_token_cannot_be_revoked(app, client, auth, create_user):
    owner = create_user("physician")
    owner_client = app.test_client()
    AuthActions(owner_client).login(owner)
    raw = create_token(owner_client)
    auth.login(create_user("patient"))
    with app.app_context():
        token_id = db.session.scalars(select(ApiToken.id)).one()
    response = post(client, f"/account/tokens/{token_id}/revoke", {}, page="/account/")
    assert response.status_code == 404
    with app.app_context():
        assert user_for_api_token(raw).id == owner.id
