"""Security: CSRF, request size, session cookies and timeouts, headers, redirects."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.sessions import SecureCookieSessionInterface

from portal import clock
from portal.auth import account_links
from portal.extensions import db
from tests.conftest import PASSWORD, csrf_token, totp_now
from tests.test_auth import (
    link_path,
    load_user,
    location,
    outbox,
    post,
    request_reset,
    reset_link,
    text,
)


def is_sent_to_login(response) -> bool:
    return response.status_code == 302 and location(response) == "/login"


# --- CSRF ---------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/login", "/register", "/forgot", "/login/code"])
def test_anonymous_forms_without_csrf_token_are_refused(client, path):
    response = client.post(path, data={"email": "someone@example.org", "password": PASSWORD})
    assert response.status_code == 400
    assert "Form expired" in text(response)


@pytest.mark.parametrize(
    "path", ["/logout", "/account/password", "/account/tokens", "/account/tokens/1/revoke"]
)
def test_signed_in_forms_without_csrf_token_are_refused(client, auth, create_user, path):
    auth.login(create_user("patient"))
    response = client.post(path, data={"pw-current": PASSWORD, "tok-name": "x"})
    assert response.status_code == 400
    assert "Form expired" in text(response)
    assert client.get("/account/").status_code == 200


@pytest.mark.parametrize(
    "path", ["/admin/invites", "/admin/users/1/deactivate", "/admin/users/1/role"]
)
def test_admin_forms_without_csrf_token_are_refused(client, auth, create_user, path):
    auth.login(create_user("admin"))
    response = client.post(path, data={"email": "x@example.org", "role": "patient"})
    assert response.status_code == 400
    assert "Form expired" in text(response)


def test_csrf_token_from_another_session_is_refused(app, client, create_user):
    user = create_user("patient")
    foreign_token = csrf_token(app.test_client())
    client.get("/login")
    response = client.post(
        "/login", data={"email": user.email, "password": PASSWORD, "csrf_token": foreign_token}
    )
    assert response.status_code == 400
    assert client.get("/account/").status_code == 302


# --- request size -------------------------------------------------------------------------
def test_oversized_request_gets_a_clear_413_page(make_app):
    client = make_app(MAX_CONTENT_LENGTH=2048).test_client()
    response = client.post("/login", data={"email": "x@example.org", "password": "p" * 4096})
    assert response.status_code == 413
    assert "Too large" in text(response)
    assert "2 KB" in text(response)


def test_oversized_api_request_gets_json(make_app):
    client = make_app(MAX_CONTENT_LENGTH=2048).test_client()
    response = client.post(
        "/login", data={"password": "p" * 4096}, headers={"Accept": "application/json"}
    )
    assert response.status_code == 413
    assert response.json["error"] == "Too large"


# --- session cookies ------------------------------------------------------------------------
def flip_last_character(value: str) -> str:
    """Change a character of the signature that carries all six bits.

    The very last base64 character of a 20-byte HMAC also holds unused bits, so
    changing it can leave the decoded signature as it was.
    """
    position = len(value) - 5
    return value[:position] + ("A" if value[position] != "A" else "B") + value[position + 1 :]


def signed_with_another_key(value: str, user_id: int = 1) -> str:
    stranger = Flask("stranger")
    stranger.secret_key = "a-different-secret-key-of-enough-length-0123"
    now = clock.now().isoformat()
    return (
        SecureCookieSessionInterface()
        .get_signing_serializer(stranger)
        .dumps({"_user_id": f"{user_id}:1", "login_at": now, "seen_at": now, "_fresh": True})
    )


@pytest.mark.parametrize(
    "tamper",
    [
        flip_last_character,
        signed_with_another_key,
        lambda value: "garbage",
        lambda value: "." + value,
        lambda value: "",
    ],
    ids=["bad-signature", "other-key", "garbage", "prefixed", "empty"],
)
def test_tampered_session_cookie_is_treated_as_anonymous(app, client, auth, create_user, tamper):
    auth.login(create_user("admin"))
    cookie = client.get_cookie("session")
    client.set_cookie("session", tamper(cookie.value))
    assert is_sent_to_login(client.get("/admin/users"))
    assert client.get("/").status_code == 200
    assert "Sign in" in text(client.get("/"))


def test_session_of_a_deleted_or_unknown_user_is_anonymous(app, client):
    serializer = SecureCookieSessionInterface().get_signing_serializer(app)
    now = clock.now().isoformat()
    for user_id in ("999:1", "x:y", "1", ""):
        client.set_cookie(
            "session", serializer.dumps({"_user_id": user_id, "login_at": now, "seen_at": now})
        )
        assert is_sent_to_login(client.get("/account/"))


# --- headers ---------------------------------------------------------------------------------
def csp_directives(response) -> dict[str, list[str]]:
    policy = response.headers["Content-Security-Policy"]
    return {
        name: values
        for name, *values in (part.split() for part in policy.split(";") if part.strip())
    }


@pytest.mark.parametrize("path", ["/", "/login", "/no-such-page", "/healthz"])
def test_security_headers_are_on_every_response(client, path):
    response = client.get(path)
    csp = csp_directives(response)
    assert "'unsafe-inline'" not in csp["script-src"]
    assert "'unsafe-eval'" not in csp["script-src"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] in ("same-origin", "no-referrer")
    assert response.headers["X-Frame-Options"] == "DENY"


def test_hsts_is_sent_over_https_only(client):
    assert "Strict-Transport-Security" not in client.get("/").headers
    hsts = client.get("/", base_url="https://localhost").headers["Strict-Transport-Security"]
    assert "max-age=" in hsts and int(hsts.split("max-age=")[1].split(";")[0]) >= 31536000


def test_signed_in_pages_are_not_cached(client, auth, create_user):
    auth.login(create_user("patient"))
    assert client.get("/account/").headers["Cache-Control"] == "no-store"


@pytest.fixture
def invite_path(app, create_user):
    admin = create_user("admin")
    with app.app_context():
        account_links.create_invite(load_user(app, admin.email), "ivy@example.org", "radiologist")
        db.session.commit()
    return link_path(outbox(app, "account.invite")[0], "invite")


@pytest.fixture
def reset_path(app, client, create_user):
    request_reset(client, create_user("patient").email)
    return reset_link(app)


@pytest.mark.parametrize(
    "link", ["invite_path", "reset_path", "/invite/unknown-token", "/reset/unknown-token"]
)
def test_one_time_link_pages_send_no_referrer(app, request, link):
    path = request.getfixturevalue(link) if link.endswith("_path") else link
    response = app.test_client().get(path)
    assert response.status_code == (410 if "unknown" in path else 200)
    assert response.headers["Referrer-Policy"] == "no-referrer"


# --- session timeouts --------------------------------------------------------------------------
def test_idle_session_ends(app, client, auth, create_user, frozen_clock):
    auth.login(create_user("patient"))
    frozen_clock.advance(app.config["SESSION_IDLE_TIMEOUT"] + timedelta(seconds=1))
    assert is_sent_to_login(client.get("/account/"))
    assert "Your session has ended" in text(client.get("/login"))
    frozen_clock.advance(timedelta(seconds=1))
    assert is_sent_to_login(client.get("/account/"))


def test_activity_keeps_the_session_alive(app, client, auth, create_user, frozen_clock):
    auth.login(create_user("patient"))
    for _ in range(3):
        frozen_clock.advance(app.config["SESSION_IDLE_TIMEOUT"] - timedelta(minutes=1))
        assert client.get("/account/").status_code == 200


def test_session_ends_at_the_absolute_timeout_despite_activity(
    app, client, auth, create_user, frozen_clock
):
    auth.login(create_user("patient"))
    step = app.config["SESSION_IDLE_TIMEOUT"] - timedelta(minutes=1)
    elapsed = timedelta(0)
    while elapsed + step <= app.config["SESSION_ABSOLUTE_TIMEOUT"]:
        frozen_clock.advance(step)
        elapsed += step
        assert client.get("/account/").status_code == 200
    frozen_clock.advance(step)
    assert is_sent_to_login(client.get("/account/"))


def test_signing_in_after_a_timeout_returns_to_the_page(
    app, client, auth, create_user, frozen_clock
):
    user = create_user("patient")
    auth.login(user)
    frozen_clock.advance(app.config["SESSION_IDLE_TIMEOUT"] + timedelta(seconds=1))
    response = client.get("/account/")
    next_url = parse_qs(urlsplit(response.headers["Location"]).query)["next"][0]
    assert next_url == "/account/"
    back = client.post(
        "/login",
        query_string={"next": next_url},
        data={"email": user.email, "password": PASSWORD, "csrf_token": csrf_token(client)},
    )
    assert location(back) == "/account/"


def test_a_form_posted_after_a_timeout_asks_to_sign_in_without_coming_back(
    app, client, auth, create_user, frozen_clock
):
    auth.login(create_user("patient"))
    token = csrf_token(client, "/account/")
    frozen_clock.advance(app.config["SESSION_IDLE_TIMEOUT"] + timedelta(seconds=1))
    response = client.post("/account/tokens", data={"tok-name": "late", "csrf_token": token})
    assert response.headers["Location"] == "/login"


# --- redirects after sign-in --------------------------------------------------------------------
OFF_SITE = [
    "https://evil.example/",
    "//evil.example/",
    "/\\evil.example/",
    "\\\\evil.example",
    "/\t/evil.example",
    "https:evil.example",
    "javascript:alert(1)",
    "evil.example",
]


def login_with_next(client, user, next_url: str):
    return client.post(
        "/login",
        query_string={"next": next_url},
        data={"email": user.email, "password": PASSWORD, "csrf_token": csrf_token(client)},
    )


@pytest.mark.parametrize("next_url", OFF_SITE)
def test_next_parameter_never_leaves_the_site(client, create_user, next_url):
    response = login_with_next(client, create_user("patient"), next_url)
    assert response.headers["Location"] == "/"


@pytest.mark.parametrize("next_url", OFF_SITE[:3])
def test_next_parameter_never_leaves_the_site_after_the_code_step(client, create_user, next_url):
    user = create_user("radiologist")
    login_with_next(client, user, next_url)
    response = post(client, "/login/code", {"code": totp_now(user)})
    assert response.headers["Location"] == "/"


def test_next_parameter_keeps_a_local_path(client, create_user):
    response = login_with_next(client, create_user("patient"), "/account/?tab=tokens")
    assert response.headers["Location"] == "/account/?tab=tokens"


def test_next_parameter_survives_the_code_step(client, create_user):
    user = create_user("radiologist")
    login_with_next(client, user, "/account/")
    assert location(post(client, "/login/code", {"code": totp_now(user)})) == "/account/"


# --- the error pages ---------------------------------------------------------------------------
def test_wrong_method_gets_a_page_not_a_crash(client):
    response = client.get("/logout")
    assert response.status_code == 405
    assert "Method Not Allowed" in text(response)


def test_behind_a_tls_proxy_hsts_is_sent_when_trusted(make_app):
    trusting = make_app(PROXY_COUNT=1).test_client()
    response = trusting.get("/login", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" in response.headers
    direct = make_app().test_client()
    response = direct.get("/login", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" not in response.headers
