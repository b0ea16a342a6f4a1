"""Single-use viewing links: issue, open without spending, redeem with a PIN or TOTP, view."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from portal.audit.models import AuditEvent
from portal.auth.models import User
from portal.cases import operations as case_operations
from portal.cases.models import Case
from portal.cases.reading_copies import make_reading_copies
from portal.cases.states import Urgency
from portal.errors import Conflict
from portal.extensions import db
from portal.links import operations, sessions
from portal.links.models import ViewerSession, ViewingLink
from portal.links.operations import LinkRefused, RequestMeta
from portal.notifications.models import Notification
from portal.opaque import hash_token
from portal.studies.models import Study
from tests import case_support as cs
from tests import report_support
from tests.conftest import AuthActions, csrf_token, totp_now
from tests.paging_support import OTHER_PIN, PIN, People, make_people

WRONG_PIN = "500731"
PATIENT_NAME = "Jane Roe"
QUESTION = "Is there a pulmonary embolism?"
VIEWER_COOKIE = sessions.VIEWER_COOKIE


@pytest.fixture
def people(app, create_user) -> People:
    """A physician, two radiologists with viewer PINs (and TOTP), and an admin."""
    return make_people(app, create_user)


def accepted(app, people: People, **fields) -> Case:
    case = cs.submit(app, people.physician, **fields)
    return cs.accept(app, cs.offer(app, case, people.radiologist), people.radiologist)


@pytest.fixture
def case(app, people) -> Case:
    """A case the radiologist accepted: they hold it."""
    return accepted(app, people, history="Short of breath since Tuesday.")


# --- helpers ----------------------------------------------------------------------------
def text(response) -> str:
    return response.get_data(as_text=True)


def issue(app, user: User, case: Case, via: str = "sms") -> str:
    with app.app_context():
        code = operations.issue_link(
            db.session.get(User, user.id), db.session.get(Case, case.id), via
        )
        db.session.commit()
    return code


def enter(browser, code: str, factor: str, page: str = "/login"):
    """POST ``factor`` to the link, with a CSRF token read from ``page``."""
    token = csrf_token(browser, page)
    return browser.post(f"/l/{code}", data={"factor": factor, "csrf_token": token})


def open_viewer(browser, code: str, factor: str = PIN):
    """Redeem ``code`` and return the redirect response (303 to the viewer)."""
    response = enter(browser, code, factor)
    assert response.status_code == 303, (response.status_code, text(response)[:800])
    return response


def link_of(app, code: str) -> ViewingLink:
    with app.app_context():
        link = db.session.scalars(
            select(ViewingLink).where(ViewingLink.code_hash == hash_token(code))
        ).one()
        db.session.expunge(link)
        return link


def audit_rows(app, action: str) -> list[AuditEvent]:
    with app.app_context():
        return db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)
        ).all()


def reload(app, user: User) -> User:
    with app.app_context():
        fresh = db.session.get(User, user.id)
        db.session.expunge(fresh)
        return fresh


def viewer_cookie(browser):
    return browser.get_cookie(VIEWER_COOKIE, path="/viewer")


# --- the whole path ---------------------------------------------------------------------
def test_open_then_redeem_with_the_pin(app, client, people, case):
    code = issue(app, people.radiologist, case)
    assert len(code) >= 43  # 32 random bytes, base64url

    page = client.get(f"/l/{code}")
    assert page.status_code == 200
    assert f"Case {case.number}: enter your viewer PIN or authenticator code" in text(page)
    assert PATIENT_NAME not in text(page) and QUESTION not in text(page)
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["Cache-Control"] == "no-store"
    assert client.get(f"/l/{code}").status_code == 200  # a preview bot's GET spent nothing
    assert link_of(app, code).used_at is None

    wrong = enter(client, code, WRONG_PIN)
    assert wrong.status_code == 401 and "4 tries left" in text(wrong)
    assert reload(app, people.radiologist).failed_logins == 1
    assert audit_rows(app, "login.failed")[-1].actor_id == people.radiologist.id

    response = open_viewer(client, code)
    assert urlsplit(response.headers["Location"]).path == f"/viewer/{case.number}"
    assert code not in response.headers["Location"]
    assert response.headers["Referrer-Policy"] == "no-referrer"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{VIEWER_COOKIE}=") and "Path=/viewer" in cookie
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert link_of(app, code).used_at is not None

    viewer = client.get(f"/viewer/{case.number}")
    assert viewer.status_code == 200
    body = text(viewer)
    assert f"Case {case.number}" in body and QUESTION in body and PATIENT_NAME in body
    assert "Short of breath since Tuesday." in body and "CT" in body
    assert f"/cases/{case.number}/report" in body  # the assignee may write the report
    assert viewer.headers["Referrer-Policy"] == "no-referrer"
    assert viewer.headers["Cache-Control"] == "no-store"

    redeemed = audit_rows(app, "link.redeemed")
    assert len(redeemed) == 1 and '"factor": "pin"' in redeemed[0].details
    viewed = audit_rows(app, "case.viewed")[-1]
    assert viewed.actor_id == people.radiologist.id and "viewer session" in viewed.details


def test_the_cookie_is_secure_on_https(app, people, case):
    app.config["BASE_URL"] = "https://overread.example"
    response = open_viewer(app.test_client(), issue(app, people.radiologist, case))
    assert "Secure" in response.headers["Set-Cookie"]


def test_a_totp_code_works_instead_of_the_pin(app, client, people, case):
    code = issue(app, people.radiologist, case)
    open_viewer(client, code, totp_now(people.radiologist))
    assert client.get(f"/viewer/{case.number}").status_code == 200
    assert '"factor": "totp"' in audit_rows(app, "link.redeemed")[0].details


def test_the_overreader_gets_the_overread_form(app, client, people, case):
    report_support.sign(app, case, people.radiologist)
    report_support.assign_overread(app, case, people.physician, people.admin, people.other)
    open_viewer(client, issue(app, people.other, case), OTHER_PIN)
    body = text(client.get(f"/viewer/{case.number}"))
    assert f"/cases/{case.number}/overread" in body and f"/cases/{case.number}/report" not in body


# --- links that do not open --------------------------------------------------------------
def test_a_used_link_is_refused(app, client, people, case):
    code = issue(app, people.radiologist, case)
    open_viewer(client, code)
    again = app.test_client()
    for response in (again.get(f"/l/{code}"), enter(again, code, PIN)):
        assert response.status_code == 410 and "already been used" in text(response)
        assert response.headers["Referrer-Policy"] == "no-referrer"
    refused = audit_rows(app, "link.refused")
    assert [row.target for row in refused] == [f"link:{link_of(app, code).id}"] * 2
    assert all('"reason": "used"' in row.details for row in refused)


def test_an_expired_link_is_refused(app, client, people, case, frozen_clock):
    code = issue(app, people.radiologist, case)
    frozen_clock.advance(timedelta(minutes=15, seconds=1))
    response = client.get(f"/l/{code}")
    assert response.status_code == 410 and "expired" in text(response)
    assert f"LINK {case.number}" in text(response)
    assert enter(client, code, PIN).status_code == 410
    assert '"reason": "expired"' in audit_rows(app, "link.refused")[-1].details


def test_a_tampered_code_is_unknown(app, client, people, case):
    code = issue(app, people.radiologist, case)
    tampered = code[:-1] + ("A" if code[-1] != "A" else "B")
    for response in (client.get(f"/l/{tampered}"), enter(client, tampered, PIN)):
        assert response.status_code == 404 and "not valid" in text(response)
        assert case.number not in text(response)
    refused = audit_rows(app, "link.refused")
    assert len(refused) == 2 and all(row.target is None for row in refused)
    assert link_of(app, code).used_at is None


def test_a_newer_link_withdraws_the_older(app, client, people, case):
    older = issue(app, people.radiologist, case)
    newer = issue(app, people.radiologist, case)
    response = client.get(f"/l/{older}")
    assert response.status_code == 410 and "withdrawn" in text(response)
    open_viewer(client, newer)


def test_someone_elses_link_refuses_their_pin(app, client, people, case):
    code = issue(app, people.radiologist, case)
    response = enter(client, code, OTHER_PIN)  # signed out, with the other radiologist's PIN
    assert response.status_code == 401
    assert reload(app, people.radiologist).failed_logins == 1  # counted to the link's owner
    assert client.get(f"/viewer/{case.number}").status_code == 401


def test_someone_elses_link_is_refused_when_signed_in(app, client, people, case):
    code = issue(app, people.radiologist, case)
    AuthActions(client).login(people.other)
    page = client.get(f"/l/{code}")
    assert page.status_code == 403 and "another radiologist" in text(page)
    response = enter(client, code, OTHER_PIN, page="/")
    assert response.status_code == 403 and viewer_cookie(client) is None
    refused = audit_rows(app, "link.refused")
    assert {row.actor_id for row in refused} == {people.other.id}
    assert all('"reason": "someone else"' in row.details for row in refused)
    open_viewer(app.test_client(), code)  # the link still works for its owner


def test_five_wrong_pins_withdraw_the_link_and_lock_the_account(app, client, people, case):
    code = issue(app, people.radiologist, case)
    for attempt in range(1, 5):
        response = enter(client, code, WRONG_PIN)
        assert response.status_code == 401 and f"{5 - attempt} tr" in text(response)
    fifth = enter(client, code, WRONG_PIN)
    assert fifth.status_code == 410 and "too many times" in text(fifth)
    assert link_of(app, code).revoked_at is not None
    assert enter(client, code, PIN).status_code == 410
    assert reload(app, people.radiologist).locked_until is not None
    assert audit_rows(app, "login.locked")


def test_five_wrong_pins_withdraw_the_link_without_a_lockout(app, client, people, case):
    app.config["LOGIN_MAX_FAILURES"] = 100
    code = issue(app, people.radiologist, case)
    statuses = [enter(client, code, WRONG_PIN).status_code for _ in range(5)]
    assert statuses == [401] * 4 + [410]
    assert reload(app, people.radiologist).locked_until is None
    assert link_of(app, code).revoked_at is not None


def test_a_locked_account_cannot_redeem(app, client, people, case):
    code = issue(app, people.radiologist, case)
    with app.app_context():
        user = db.session.get(User, people.radiologist.id)
        user.locked_until = user.created_at + timedelta(days=365 * 100)
        db.session.commit()
    response = enter(client, code, PIN)
    assert response.status_code == 401 and "locked" in text(response)
    assert link_of(app, code).used_at is None


def test_a_deactivated_radiologist_is_refused(app, client, people, case):
    code = issue(app, people.radiologist, case)
    with app.app_context():
        db.session.get(User, people.radiologist.id).active = False
        db.session.commit()
    response = client.get(f"/l/{code}")
    assert response.status_code == 403 and "deactivated" in text(response)


def test_posting_is_rate_limited(app, client, people, case):
    app.config["LOGIN_RATE_LIMIT"] = "3 per minute"
    code = issue(app, people.radiologist, case)
    statuses = [enter(client, code, WRONG_PIN).status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]


# --- revocation by the case's moves ----------------------------------------------------
def test_reassigning_revokes_links_and_ends_the_session(app, client, people, case):
    open_viewer(client, issue(app, people.radiologist, case))
    unused = issue(app, people.radiologist, case)
    assert client.get(f"/viewer/{case.number}").status_code == 200
    with app.app_context():
        admin, other = db.session.get(User, people.admin.id), db.session.get(User, people.other.id)
        case_operations.reassign_case(case.id, admin, [other])
        db.session.commit()
    ended = client.get(f"/viewer/{case.number}")
    assert ended.status_code == 401 and "viewing session has ended" in text(ended)
    assert f"LINK {case.number}" in text(ended) and "/overread mine" in text(ended)
    assert viewer_cookie(client) is None
    refused = app.test_client().get(f"/l/{unused}")
    assert refused.status_code == 410 and "withdrawn" in text(refused)
    assert '"reason": "revoked"' in audit_rows(app, "viewer.refused")[-1].details


def test_closing_revokes_links_and_ends_the_session(app, client, people, case):
    open_viewer(client, issue(app, people.radiologist, case))
    report_support.sign(app, case, people.radiologist)
    assert client.get(f"/viewer/{case.number}").status_code == 200  # reported: still held
    unused = issue(app, people.radiologist, case)
    with app.app_context():
        case_operations.close_case(case.id, db.session.get(User, people.physician.id))
        db.session.commit()
    assert client.get(f"/viewer/{case.number}").status_code == 401
    assert app.test_client().get(f"/l/{unused}").status_code == 410


def test_a_link_no_longer_held_is_refused_even_unrevoked(app, client, people, case):
    code = issue(app, people.radiologist, case)
    with app.app_context():  # a move that does not revoke: the check at redemption still holds
        db.session.get(Case, case.id).assignee_id = None
        db.session.commit()
    response = enter(client, code, PIN)
    assert response.status_code == 410 and "reassigned or closed" in text(response)


# --- viewer sessions -------------------------------------------------------------------
def test_an_idle_viewer_session_ends(app, client, people, case, frozen_clock):
    open_viewer(client, issue(app, people.radiologist, case))
    for _ in range(3):
        frozen_clock.advance(timedelta(minutes=19))
        assert client.get(f"/viewer/{case.number}").status_code == 200
    frozen_clock.advance(timedelta(minutes=20, seconds=1))
    assert client.get(f"/viewer/{case.number}").status_code == 401
    assert '"reason": "idle timeout"' in audit_rows(app, "viewer.refused")[-1].details


def test_a_viewer_session_ends_after_four_hours(app, client, people, case, frozen_clock):
    open_viewer(client, issue(app, people.radiologist, case))
    for _ in range(15):
        frozen_clock.advance(timedelta(minutes=15))
        assert client.get(f"/viewer/{case.number}").status_code == 200
    frozen_clock.advance(timedelta(minutes=15))
    assert client.get(f"/viewer/{case.number}").status_code == 401
    assert '"reason": "absolute timeout"' in audit_rows(app, "viewer.refused")[-1].details


def test_a_session_opens_its_own_case_only(app, client, people, case):
    second = accepted(app, people)
    open_viewer(client, issue(app, people.radiologist, case))
    response = client.get(f"/viewer/{second.number}")
    assert response.status_code == 403 and "another case" in text(response)
    assert PATIENT_NAME not in text(response)
    assert client.get(f"/viewer/{case.number}").status_code == 200


def test_ending_the_session(app, client, people, case):
    open_viewer(client, issue(app, people.radiologist, case))
    token = csrf_token(client, f"/viewer/{case.number}")
    ended = client.post(f"/viewer/{case.number}/end", data={"csrf_token": token})
    assert ended.status_code == 200 and viewer_cookie(client) is None
    with app.app_context():
        assert db.session.scalars(select(ViewerSession)).one().revoked_at is not None
    assert client.get(f"/viewer/{case.number}").status_code == 401
    assert audit_rows(app, "viewer.ended")


def test_without_a_session_the_viewer_is_refused(app, client, people, case):
    response = client.get(f"/viewer/{case.number}")
    assert response.status_code == 401 and PATIENT_NAME not in text(response)
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert client.get("/viewer/NOSUCH").status_code == 401
    assert len(audit_rows(app, "viewer.refused")) == 2


@pytest.mark.parametrize(
    ("who", "status"), [("physician", 200), ("admin", 200), ("other", 403), ("radiologist", 200)]
)
def test_signed_in_users_open_the_viewer_by_case_access(app, client, people, case, who, status):
    AuthActions(client).login(getattr(people, who))
    response = client.get(f"/viewer/{case.number}")
    assert response.status_code == status
    assert (PATIENT_NAME in text(response)) is (status == 200)


def test_an_offered_radiologist_sees_no_viewer(app, client, people):
    case = cs.offer(app, cs.submit(app, people.physician), people.other)
    AuthActions(client).login(people.other)
    assert client.get(f"/viewer/{case.number}").status_code == 403


# --- secrets stay secret ---------------------------------------------------------------
def test_codes_and_tokens_appear_in_no_log_nor_audit_row(app, client, people, case, caplog):
    caplog.set_level(logging.DEBUG)
    code = issue(app, people.radiologist, case)
    client.get(f"/l/{code}")
    enter(client, code, WRONG_PIN)
    open_viewer(client, code)
    client.get(f"/viewer/{case.number}")
    enter(app.test_client(), code, PIN)  # refused: used
    token = viewer_cookie(client).value
    assert code not in caplog.text and token not in caplog.text
    with app.app_context():
        for row in db.session.scalars(select(AuditEvent)):
            for value in (row.target or "", row.details):
                assert code not in value and token not in value
                assert hash_token(code) not in value and hash_token(token) not in value


def test_only_hashes_are_stored(app, client, people, case):
    code = issue(app, people.radiologist, case)
    open_viewer(client, code)
    token = viewer_cookie(client).value
    with app.app_context():
        link = db.session.scalars(select(ViewingLink)).one()
        session = db.session.scalars(select(ViewerSession)).one()
        assert link.code_hash == hash_token(code) and session.token_hash == hash_token(token)
        assert session.link_id == link.id and session.case_id == case.id
        assert link.expires_at - link.created_at == timedelta(minutes=15)
        assert session.expires_at - session.created_at == timedelta(hours=4)


# --- the dispatcher's maker ------------------------------------------------------------
def test_link_for_notification_makes_a_url(app, people, case):
    row = Notification(user_id=people.radiologist.id, case_id=case.id, channel="slack")
    with app.app_context():
        url = operations.link_for_notification(row)
        link = db.session.scalars(select(ViewingLink)).one()
        assert url.startswith("http://127.0.0.1:5000/l/")
        assert link.code_hash == hash_token(url.rsplit("/", 1)[1]) and link.issued_via == "slack"
    assert '"via": "slack"' in audit_rows(app, "link.issued")[0].details


def test_link_for_notification_refuses_a_case_no_longer_held(app, people, case):
    row = Notification(user_id=people.radiologist.id, case_id=case.id, channel="sms")
    with app.app_context():
        admin, other = db.session.get(User, people.admin.id), db.session.get(User, people.other.id)
        case_operations.reassign_case(case.id, admin, [other])
        db.session.commit()
        with pytest.raises(Conflict, match=case.number):
            operations.link_for_notification(row)
        assert db.session.scalars(select(ViewingLink)).all() == []


# --- a race ------------------------------------------------------------------------------
@pytest.mark.parametrize("app", ["postgresql"], indirect=True)
def test_two_redemptions_at_once_only_one_wins(app, people, case, monkeypatch):
    code = issue(app, people.radiologist, case)
    both_checked = threading.Barrier(2, timeout=30)
    real_pin_matches = operations.pin_matches

    def pin_matches_together(
        profile, pin
    ):  # both have read the unused link before either spends it
        matched = real_pin_matches(profile, pin)
        both_checked.wait()
        return matched

    monkeypatch.setattr(operations, "pin_matches", pin_matches_together)
    outcomes = []

    def attempt():
        with app.app_context():
            try:
                outcomes.append(("won", operations.redeem(code, PIN, RequestMeta())))
            except LinkRefused as refusal:
                outcomes.append(("refused", refusal.reason))
            finally:
                db.session.remove()

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(kind for kind, _ in outcomes) == ["refused", "won"]
    assert ("refused", "used") in outcomes
    with app.app_context():
        assert len(db.session.scalars(select(ViewerSession)).all()) == 1


def test_a_post_without_its_csrf_token_spends_nothing(app, client, people, case):
    code = issue(app, people.radiologist, case)
    client.get(f"/l/{code}")
    response = client.post(f"/l/{code}", data={"factor": PIN})
    assert response.status_code == 400
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert link_of(app, code).used_at is None


def de_identified_case(app, people: People) -> Case:
    """A physician's case read from de-identified copies, accepted by the radiologist."""
    with app.app_context():
        physician = db.session.merge(people.physician)
        study_id = cs.ingest_sample(physician)
        number = case_operations.new_case_number()
        copies = make_reading_copies([db.session.get(Study, study_id)], physician, number)
        request = case_operations.CaseRequest(
            QUESTION,
            Urgency.URGENT,
            [study_id],
            deidentify=True,
            subject_name=PATIENT_NAME,
            reading_copies=copies,
        )
        case = case_operations.submit_case(physician, request, number=number)
        db.session.commit()
        case_id = case.id
    return cs.accept(
        app, cs.offer(app, cs.load(app, case_id), people.radiologist), people.radiologist
    )


def test_a_de_identified_case_shows_the_reader_no_patient_details(app, client, people):
    case = de_identified_case(app, people)
    open_viewer(client, issue(app, people.radiologist, case))
    response = client.get(f"/viewer/{case.number}")
    assert response.status_code == 200 and QUESTION in text(response)
    assert PATIENT_NAME not in text(response) and "de-identified reading" in text(response)
