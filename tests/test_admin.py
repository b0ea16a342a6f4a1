"""Admin pages: users, roles, deactivation, invites, the audit log and who may see them."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta

import pytest

from portal.audit.operations import record
from portal.auth.api_tokens import issue_api_token, user_for_api_token
from portal.auth.models import User
from portal.extensions import db
from tests.conftest import AuthActions
from tests.test_auth import (
    audit_events,
    field_errors,
    link_path,
    load_user,
    location,
    outbox,
    password_login,
    post,
    text,
)

NEW_PASSWORD = "invited person passphrase"
ADMIN_PAGES = (
    "/admin/users",
    "/admin/audit",
    "/admin/outbox",
    "/admin/users/1",
    "/admin/invites",
    "/admin/audit/export.csv",
)


@pytest.fixture
def admin(create_user):
    return create_user("admin", email="ada@example.org", name="Ada Admin")


@pytest.fixture
def as_admin(auth, admin):
    """Sign the ``client`` fixture in as the admin."""
    auth.login(admin)
    return admin


def signed_in_client(app, user):
    """Return a second browser, signed in as ``user``."""
    client = app.test_client()
    AuthActions(client).login(user)
    assert client.get("/account/").status_code == 200
    return client


def emails_listed(client, query: str = "") -> set[str]:
    html = text(client.get(f"/admin/users?{query}"))
    return set(re.findall(r'<a href="/admin/users/\d+">([^<]+)</a>', html))


# --- users ----------------------------------------------------------------------------
@pytest.fixture
def people(create_user):
    return {
        "zoe": create_user("patient", email="zoe@example.org", name="Zoe Quinn"),
        "max": create_user("radiologist", email="max@example.org", name="Max Maxwell"),
        "uma": create_user("physician", email="uma@clinic.example", name="Uma Rao"),
    }


def test_users_page_lists_everyone(client, as_admin, people):
    assert emails_listed(client) == {"ada@example.org", *(p.email for p in people.values())}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("q=ZOE@", {"zoe@example.org"}),
        ("q=maxwell", {"max@example.org"}),
        ("q=clinic", {"uma@clinic.example"}),
        ("role=radiologist", {"max@example.org"}),
        ("q=example.org&role=patient", {"zoe@example.org"}),
        ("q=nobody", set()),
    ],
)
def test_users_page_searches_by_email_or_name_and_filters_by_role(
    client, as_admin, people, query, expected
):
    assert emails_listed(client, query) == expected


def test_user_search_treats_wildcards_as_plain_text(client, as_admin, create_user):
    create_user("patient", email="a_b@example.org")
    create_user("patient", email="axb@example.org")
    assert emails_listed(client, "q=a_b") == {"a_b@example.org"}
    assert emails_listed(client, "q=%25") == set()


def change_role(client, user, role: str):
    return post(
        client, f"/admin/users/{user.id}/role", {"role": role}, page=f"/admin/users/{user.id}"
    )


def change_active(client, user, change: str):
    return post(client, f"/admin/users/{user.id}/{change}", {}, page=f"/admin/users/{user.id}")


def test_role_change_is_audited_and_ends_the_users_session(app, client, as_admin, create_user):
    user = create_user("patient")
    their_browser = signed_in_client(app, user)
    assert location(change_role(client, user, "physician")) == f"/admin/users/{user.id}"
    assert load_user(app, user.email).role == "physician"
    [event] = audit_events(app, "user.role_changed")
    assert event["actor_id"] == as_admin.id and event["target"] == f"user:{user.id}"
    assert event["details"] == {"old": "patient", "new": "physician"}
    assert location(their_browser.get("/account/")) == "/login"


def test_deactivation_ends_the_users_sessions_and_blocks_sign_in(
    app, client, as_admin, create_user
):
    user = create_user("patient")
    their_browser = signed_in_client(app, user)
    assert location(change_active(client, user, "deactivate")) == f"/admin/users/{user.id}"
    assert location(their_browser.get("/account/")) == "/login"
    response = password_login(their_browser, user)
    assert response.status_code == 401
    assert "deactivated" in field_errors(text(response), "password")
    assert [e["target"] for e in audit_events(app, "user.deactivated")] == [f"user:{user.id}"]


def test_deactivation_stops_the_users_api_tokens(app, client, as_admin, create_user):
    user = create_user("physician")
    with app.app_context():
        raw = issue_api_token(db.session.get(User, user.id))
        db.session.commit()
    change_active(client, user, "deactivate")
    with app.app_context():
        assert user_for_api_token(raw) is None


def test_reactivation_lets_the_user_sign_in_again(app, client, as_admin, create_user):
    user = create_user("patient")
    change_active(client, user, "deactivate")
    change_active(client, user, "reactivate")
    assert load_user(app, user.email).active
    assert location(password_login(app.test_client(), user)) == "/"
    assert audit_events(app, "user.reactivated")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda client, admin: change_role(client, admin, "patient"),
            "cannot change your own role",
        ),
        (
            lambda client, admin: change_active(client, admin, "deactivate"),
            "cannot deactivate your own account",
        ),
    ],
)
def test_admin_cannot_demote_or_deactivate_themselves(app, client, as_admin, change, message):
    response = change(client, as_admin)
    assert message in text(client.get(location(response)))
    me = load_user(app, as_admin.email)
    assert (me.role, me.active) == ("admin", True)
    assert client.get("/admin/users").status_code == 200


# --- who may see the admin pages -------------------------------------------------------
@pytest.mark.parametrize("role", ["patient", "physician", "radiologist"])
@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_non_admins_are_refused_and_audited(app, client, auth, create_user, role, path):
    user = create_user(role)
    auth.login(user)
    response = client.get(path)
    assert response.status_code == 403
    assert "Not allowed" in text(response)
    [event] = audit_events(app, "authz.denied")
    assert (event["actor_id"], event["target"]) == (user.id, path)


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_anonymous_visitors_are_sent_to_sign_in(client, path):
    assert location(client.get(path)) == "/login"


# --- invites ----------------------------------------------------------------------------
def invite(client, email: str, role: str = "radiologist"):
    return post(client, "/admin/invites", {"email": email, "role": role})


def invite_link(app) -> str:
    return link_path(outbox(app, "account.invite")[-1], "invite")


def accept(client, path: str, name: str = "Ivy Invited", password: str = NEW_PASSWORD):
    return post(client, path, {"name": name, "password": password, "confirm": password})


def test_invite_goes_to_the_outbox_and_is_audited(app, client, as_admin):
    assert location(invite(client, "ivy@example.org")) == "/admin/invites"
    [message] = outbox(app, "account.invite")
    assert message.recipient == "ivy@example.org"
    assert "/invite/" in message.body and "as a radiologist" in message.body
    [event] = audit_events(app, "invite.created")
    assert event["actor_id"] == as_admin.id
    assert event["details"] == {"email": "ivy@example.org", "role": "radiologist"}
    assert "ivy@example.org" in text(client.get("/admin/invites"))


@pytest.mark.parametrize(
    ("role", "first_stop"), [("radiologist", "/login/enrol"), ("physician", "/")]
)
def test_invitee_sets_a_password_and_gets_the_invited_role(app, client, as_admin, role, first_stop):
    invite(client, "ivy@example.org", role)
    invitee = app.test_client()
    path = invite_link(app)
    page = invitee.get(path)
    assert "ivy@example.org" in text(page) and role in text(page)
    assert location(accept(invitee, path)) == "/login"
    user = load_user(app, "ivy@example.org")
    assert (user.role, user.name) == (role, "Ivy Invited")
    assert audit_events(app, "invite.accepted")
    assert location(password_login(invitee, user, NEW_PASSWORD)) == first_stop


def test_invite_link_works_once(app, client, as_admin):
    invite(client, "ivy@example.org")
    path = invite_link(app)
    accept(app.test_client(), path)
    response = app.test_client().get(path)
    assert response.status_code == 410
    assert "already been used" in text(response)


def test_invite_link_expires(app, client, as_admin, frozen_clock):
    invite(client, "ivy@example.org")
    frozen_clock.advance(app.config["INVITE_LIFETIME"] + timedelta(seconds=1))
    response = app.test_client().get(invite_link(app))
    assert response.status_code == 410
    assert "expired" in text(response)


def test_inviting_an_existing_email_shows_the_error_next_to_the_field(
    app, client, as_admin, create_user
):
    create_user("patient", email="zoe@example.org")
    response = invite(client, "Zoe@Example.org")
    assert response.status_code == 400
    assert "already exists" in field_errors(text(response), "email")
    assert 'value="Zoe@Example.org"' in text(response)
    assert outbox(app, "account.invite") == []


# --- audit log ---------------------------------------------------------------------------
AUDIT_ROW = re.compile(
    r"<tr><td>\d+</td><td>[^<]*</td>\s*<td>([^<]*)</td><td>([^<]*)</td>"
    r"<td>([^<]*)</td>"
)


def audit_page_rows(client, query: str) -> list[tuple[str, str, str]]:
    """Return (who, action, case) for each row the audit page shows."""
    return AUDIT_ROW.findall(text(client.get(f"/admin/audit?{query}")))


@pytest.fixture
def audit_trail(app, client, people, as_admin):
    """A few known events: two sign-ins and a case event."""
    AuthActions(app.test_client()).login(people["zoe"])
    password_login(app.test_client(), people["uma"])
    with app.app_context():
        record("case.viewed", load_user(app, "uma@clinic.example"), case_id=42)
        db.session.commit()
    return people


def test_audit_page_filters_by_user_id(client, audit_trail):
    rows = audit_page_rows(client, f"user={audit_trail['zoe'].id}")
    assert rows and {who for who, _, _ in rows} == {"zoe@example.org"}


def test_audit_page_filters_by_user_email(client, audit_trail):
    rows = audit_page_rows(client, "user=clinic.example")
    assert {(who, action) for who, action, _ in rows} >= {
        ("uma@clinic.example", "login.success"),
        ("uma@clinic.example", "case.viewed"),
    }
    assert {who for who, _, _ in rows} == {"uma@clinic.example"}


def test_audit_page_filters_by_case(client, audit_trail):
    assert audit_page_rows(client, "case=42") == [("uma@clinic.example", "case.viewed", "42")]


def test_audit_page_filters_by_action(client, audit_trail):
    rows = audit_page_rows(client, "action=login.success")
    assert {who for who, _, _ in rows} == {
        "ada@example.org",
        "zoe@example.org",
        "uma@clinic.example",
    }
    assert {action for _, action, _ in rows} == {"login.success"}


def test_audit_csv_export_holds_the_rows_and_is_audited(app, client, audit_trail):
    response = client.get("/admin/audit/export.csv?action=login.")
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(text(response))))
    assert {r["actor_email"] for r in rows if r["action"] == "login.success"} == {
        "ada@example.org",
        "zoe@example.org",
        "uma@clinic.example",
    }
    assert all(r["action"].startswith("login.") for r in rows)
    [event] = audit_events(app, "audit.exported")
    assert event["details"] == {
        "format": "csv",
        "filters": {"user": "", "case": "", "action": "login."},
    }


def test_audit_csv_export_quotes_cells_a_spreadsheet_would_run(app, client, audit_trail):
    from portal.audit.operations import record
    from portal.extensions import db

    with app.app_context():
        record("login.failed", target='email:=HYPERLINK("http://x")@example.org')
        db.session.commit()
    rows = list(csv.DictReader(io.StringIO(text(client.get("/admin/audit/export.csv")))))
    [row] = [r for r in rows if "HYPERLINK" in r["target"]]
    assert row["target"].startswith("email:")  # not a formula: it starts with text
    formula = "=cmd|' /C calc'!A0"
    with app.app_context():
        record("login.failed", target=formula)
        db.session.commit()
    rows = list(csv.DictReader(io.StringIO(text(client.get("/admin/audit/export.csv")))))
    assert "'" + formula in {r["target"] for r in rows}


@pytest.mark.parametrize("app", ["sqlite", "postgresql"], indirect=True)
def test_audit_json_export_holds_the_rows_and_is_audited(app, client, as_admin, audit_trail):
    response = client.get("/admin/audit/export.json?case=42")
    assert response.mimetype == "application/json"
    [row] = json.loads(text(response))
    assert (row["actor_email"], row["action"], row["case_id"]) == (
        "uma@clinic.example",
        "case.viewed",
        42,
    )
    assert len(row["hash"]) == 64 and isinstance(row["details"], dict)
    [event] = audit_events(app, "audit.exported")
    assert (event["actor_id"], event["details"]["format"]) == (as_admin.id, "json")


def test_outbox_page_lists_pages_with_provider_status_and_filters(app, client, as_admin):
    from portal.notifications.models import Notification, Status
    from portal.notifications.operations import enqueue

    with app.app_context():
        page = enqueue(
            channel="sms",
            recipient="+15551230001",
            kind="case.page",
            body="Overread STAT CT chest, case K7Q2XM.",
            idempotency_key="page-1",
        )
        page.status, page.provider_message_id, page.provider_status = (
            Status.SENT,
            "SM" + "0" * 32,
            "delivered",
        )
        enqueue(
            channel="slack",
            recipient="U0PAGED",
            kind="case.page",
            body="Overread STAT CT chest, case K7Q2XM.",
            idempotency_key="page-2",
        ).status = Status.FAILED
        db.session.commit()
        assert db.session.query(Notification).count() >= 2
    html = client.get("/admin/outbox").get_data(as_text=True)
    assert "provider: delivered" in html and "SM" + "0" * 32 in html
    assert "sent 1" in html and "failed 1" in html
    only_sms = client.get("/admin/outbox?channel=sms").get_data(as_text=True)
    assert "+15551230001" in only_sms and "U0PAGED" not in only_sms
    assert client.get("/admin/outbox?status=bogus").status_code == 400
