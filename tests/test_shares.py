"""Sharing a case with an outside clinician: the link, the emailed code, the pages, revocation."""

from __future__ import annotations

import io
import re
import zipfile
from datetime import timedelta
from urllib.parse import urlsplit

import pydicom
import pytest
from flask import render_template
from pypdf import PdfReader
from sqlalchemy import select

from portal import clock
from portal.audit.models import AuditEvent
from portal.cases.access import View
from portal.cases.models import Case
from portal.extensions import db
from portal.notifications.models import Notification
from portal.reports.models import Report
from portal.shares.models import Share
from portal.studies.models import Instance, Series
from tests import case_support as cs
from tests.conftest import AuthActions, csrf_token

PATIENT_NAME = "Jane Roe"
QUESTION = "Is there a pulmonary embolism?"
FINDINGS = "Filling defect in the right lower lobe artery."


# --- helpers ------------------------------------------------------------------------
def text(response) -> str:
    return response.get_data(as_text=True)


def location(response) -> str:
    assert response.status_code in (302, 303), (response.status_code, text(response)[:500])
    return urlsplit(response.headers["Location"]).path


def outbox(app, kind: str) -> list[Notification]:
    with app.app_context():
        return db.session.scalars(
            select(Notification).where(Notification.kind == kind).order_by(Notification.id)
        ).all()


def audit_rows(app, action: str, target: str | None = None) -> list[AuditEvent]:
    with app.app_context():
        query = select(AuditEvent).where(AuditEvent.action == action)
        if target is not None:
            query = query.where(AuditEvent.target == target)
        return db.session.scalars(query.order_by(AuditEvent.seq)).all()


def share_path(notification: Notification) -> str:
    match = re.search(r"https?://[^/\s]+(/shared/[A-Za-z0-9_\-]+)", notification.body)
    assert match, notification.body
    return match.group(1)


def latest_code(app) -> str:
    return re.search(r"\b(\d{6})\b", outbox(app, "share.code")[-1].body).group(1)


def sign_report(app, case: Case, author) -> None:
    with app.app_context():
        report = Report(
            case_id=case.id,
            author_id=author.id,
            findings=FINDINGS,
            impression="Acute pulmonary embolism.",
            signed_at=clock.now(),
            signed_with="password",
            content_hash="0" * 64,
        )
        db.session.add(report)
        db.session.commit()


def share_case(post_form, case: Case, email: str = "x@clinic.example", days=None, page="/"):
    """Post the case page's share form (``page`` supplies the CSRF token)."""
    form = {"share-email": email, **({"share-days": days} if days is not None else {})}
    return post_form(f"/cases/{case.number}/shares", form, page=page)


@pytest.fixture
def people(create_user):
    class People:
        physician = create_user("physician", name="Dr Referrer")
        patient = create_user("patient", name="Pat Ient")
        radiologist = create_user("radiologist", name="Dr Reader")
        admin = create_user("admin")

    return People


@pytest.fixture
def case(app, people) -> Case:
    return cs.submit(app, people.physician, subject_name=PATIENT_NAME, history="Short of breath.")


@pytest.fixture
def shared(app, client, auth, post_form, people, case):
    """The physician shares the case; return the path of the emailed link."""
    auth.login(people.physician)
    page = f"/cases/{case.number}"
    response = share_case(post_form, case, "Outside@Clinic.example", days=7, page=page)
    assert location(response) == page
    return share_path(outbox(app, "share.link")[-1])


@pytest.fixture
def recipient(app):
    """A second browser: the outside clinician, signed in nowhere."""
    return app.test_client()


def ask_for_code(browser):
    return browser.post(
        "/shared/verify/code", data={"csrf_token": csrf_token(browser, "/shared/verify")}
    )


def enter_code(browser, code: str, **kwargs):
    token = csrf_token(browser, "/shared/verify")
    return browser.post("/shared/verify", data={"code": code, "csrf_token": token}, **kwargs)


def open_and_verify(app, browser, link: str) -> None:
    """Open the emailed link, ask for a code and type it in."""
    assert location(browser.get(link)) == "/shared/verify"
    ask_for_code(browser)
    assert location(enter_code(browser, latest_code(app))) == "/shared/case"


# --- sharing ------------------------------------------------------------------------
def test_sharing_emails_a_link_without_patient_data(app, people, case, shared):
    (email,) = outbox(app, "share.link")
    assert email.recipient == "outside@clinic.example"
    assert f"http://127.0.0.1:5000{shared}" in email.body
    assert case.number in email.body and "Dr Referrer" in email.body
    for phi in (PATIENT_NAME, QUESTION, "Short of breath"):
        assert phi not in email.body and phi not in email.subject
    with app.app_context():
        share = db.session.scalars(select(Share)).one()
        assert share.token_hash not in email.body  # the link holds the code; only its hash is kept
        assert share.expires_at - share.created_at == timedelta(days=7)
    (created,) = audit_rows(app, "share.created")
    assert (created.case_id, created.target, created.actor_id) == (
        case.id,
        f"share:{share.id}",
        people.physician.id,
    )


def test_an_admin_may_share(app, auth, post_form, people, case):
    auth.login(people.admin)
    assert share_case(post_form, case).status_code == 302
    with app.app_context():
        share = db.session.scalars(select(Share)).one()
        assert share.expires_at - share.created_at == timedelta(days=app.config["SHARE_DAYS"])


def test_days_outside_the_allowed_range_are_refused(app, client, auth, post_form, people, case):
    auth.login(people.physician)
    most = app.config["SHARE_DAYS"]
    for days in (0, most + 1):
        assert share_case(post_form, case, days=days).status_code == 302
        with client.session_transaction() as browser_session:
            flashes = browser_session.pop("_flashes")
        assert flashes == [("error", f"Not shared: A share lasts between 1 and {most} days.")]
    assert outbox(app, "share.link") == []


def test_patients_and_radiologists_may_not_share(app, client, auth, post_form, people):
    case = cs.submit(app, people.patient)  # the patient is the requester: full view, no sharing
    case = cs.accept(app, cs.offer(app, case, people.radiologist), people.radiologist)
    for user in (people.patient, people.radiologist):
        auth.login(user)
        assert share_case(post_form, case).status_code == 403
        auth.logout()
    assert outbox(app, "share.link") == []
    denied = audit_rows(app, "authz.denied")
    assert [row.actor_id for row in denied] == [people.patient.id, people.radiologist.id]


def test_a_physician_not_on_the_case_sees_no_such_case(app, auth, post_form, create_user, case):
    auth.login(create_user("physician"))
    response = share_case(post_form, case)
    assert response.status_code == 404


# --- the recipient --------------------------------------------------------------------
def test_recipient_opens_the_case_with_the_emailed_code(app, people, case, shared, recipient):
    sign_report(app, case, people.radiologist)
    response = recipient.get(shared, follow_redirects=True)
    token = shared.rsplit("/", 1)[1]
    assert response.request.url == "http://localhost/shared/verify" and token not in text(response)
    assert response.history[0].headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert case.number in text(response)

    sent = ask_for_code(recipient)
    assert location(sent) == "/shared/verify"
    (code_email,) = outbox(app, "share.code")
    assert code_email.recipient == "outside@clinic.example"
    assert PATIENT_NAME not in code_email.body
    with app.app_context():
        assert latest_code(app) not in db.session.scalars(select(Share.otp_hash)).one()

    opened = enter_code(recipient, latest_code(app), follow_redirects=True)
    page = text(opened)
    assert opened.request.url == "http://localhost/shared/case"
    assert opened.headers["Referrer-Policy"] == "no-referrer"
    assert opened.headers["Cache-Control"] == "no-store"
    for shown in (case.number, PATIENT_NAME, QUESTION, "Short of breath.", FINDINGS, "Dr Reader"):
        assert shown in page
    assert "/shared/case/report.pdf" in page

    target = audit_rows(app, "share.created")[0].target
    for action in ("share.opened", "share.code_sent", "share.verified", "share.viewed"):
        (row,) = audit_rows(app, action, target)
        assert row.case_id == case.id and row.actor_id is None
        assert PATIENT_NAME not in row.details


def test_nothing_of_the_case_shows_before_the_code(app, people, case, shared, recipient):
    sign_report(app, case, people.radiologist)
    pages = [recipient.get(shared, follow_redirects=True)]
    ask_for_code(recipient)
    pages.append(recipient.get("/shared/verify"))
    assert location(recipient.get("/shared/case")) == "/shared/verify"
    with app.app_context():
        study_id = db.session.get(Case, case.id).studies[0].study_id
    for path in ("/shared/case/report.pdf", f"/shared/case/studies/{study_id}.zip"):
        pages.append(recipient.get(path))
        assert pages[-1].status_code == 403
    for response in pages:
        for secret in (PATIENT_NAME, QUESTION, FINDINGS, "Short of breath"):
            assert secret not in text(response)
    assert audit_rows(app, "share.viewed") == []


def test_pages_need_a_share_session(client):
    assert client.get("/shared/case").status_code == 403
    assert client.get("/shared/verify").status_code == 403


def test_five_wrong_codes_void_the_code(app, case, shared, recipient):
    recipient.get(shared)
    ask_for_code(recipient)
    right = latest_code(app)
    wrong = f"{(int(right) + 1) % 10**6:06d}"
    for attempt in range(1, 6):
        response = enter_code(recipient, wrong)
        assert response.status_code == 400
        message = "no longer works" if attempt == 5 else f"{5 - attempt} tr"
        assert message in text(response)
    response = enter_code(recipient, right)
    assert response.status_code == 400 and "no longer valid" in text(response)
    failed = audit_rows(app, "share.code_failed")
    assert len(failed) == 6 and '"voided": true' in failed[4].details

    open_and_verify(app, recipient, shared)  # a new code works
    assert recipient.get("/shared/case").status_code == 200


def test_a_code_lasts_ten_minutes(app, case, shared, recipient, frozen_clock):
    recipient.get(shared)
    ask_for_code(recipient)
    frozen_clock.advance(timedelta(minutes=10, seconds=1))
    response = enter_code(recipient, latest_code(app))
    assert response.status_code == 400 and "no longer valid" in text(response)


def test_sending_codes_is_rate_limited(app, case, shared, recipient):
    recipient.get(shared)
    token = csrf_token(recipient, "/shared/verify")
    statuses = [
        recipient.post("/shared/verify/code", data={"csrf_token": token}).status_code
        for _ in range(6)
    ]
    assert statuses == [302] * 5 + [429]
    assert len(outbox(app, "share.code")) == 5


def test_an_expired_share_is_refused(app, auth, post_form, people, case, recipient, frozen_clock):
    auth.login(people.physician)
    share_case(post_form, case, days=1)
    link = share_path(outbox(app, "share.link")[-1])
    open_and_verify(app, recipient, link)
    frozen_clock.advance(timedelta(days=1, seconds=1))

    ended = recipient.get("/shared/case")
    assert ended.status_code == 410 and "expired" in text(ended)
    assert recipient.get("/shared/case").status_code == 403  # the session is gone
    reopened = app.test_client().get(link)
    assert reopened.status_code == 410 and "expired" in text(reopened)
    assert reopened.headers["Referrer-Policy"] == "no-referrer"
    reasons = [row.details for row in audit_rows(app, "share.refused")]
    assert reasons == ['{"reason": "expired"}'] * 2


def test_an_idle_share_session_ends(app, case, shared, recipient, frozen_clock):
    open_and_verify(app, recipient, shared)
    frozen_clock.advance(app.config["SESSION_IDLE_TIMEOUT"] + timedelta(seconds=1))
    ended = recipient.get("/shared/case")
    assert ended.status_code == 410 and "Open the link in your email again" in text(ended)
    assert location(recipient.get(shared)) == "/shared/verify"  # the link itself still works


def test_an_unknown_link_is_refused(app, client):
    response = client.get("/shared/not-a-real-code-at-all")
    assert response.status_code == 410 and "not valid" in text(response)
    (row,) = audit_rows(app, "share.refused")
    assert row.details == '{"reason": "unknown"}'


def test_revoking_ends_an_open_session_at_once(app, client, people, case, shared, recipient):
    open_and_verify(app, recipient, shared)
    assert recipient.get("/shared/case").status_code == 200
    with app.app_context():
        share_id = db.session.scalars(select(Share.id)).one()
    page = f"/cases/{case.number}/shares/{share_id}/revoke"
    response = client.post(page, data={"csrf_token": csrf_token(client, "/")})
    assert response.status_code == 302

    ended = recipient.get("/shared/case")
    assert ended.status_code == 410 and "withdrawn" in text(ended)
    assert recipient.get(shared).status_code == 410
    with app.app_context():
        share = db.session.get(Share, share_id)
        assert share.revoked_at is not None and share.session_version == 2
    (revoked,) = audit_rows(app, "share.revoked", f"share:{share_id}")
    assert revoked.actor_id == people.physician.id


def test_a_share_of_another_case_cannot_be_revoked_here(app, client, people, case, shared):
    other = cs.submit(app, people.physician, sample="MR_small.dcm")
    with app.app_context():
        share_id = db.session.scalars(select(Share.id)).one()
    response = client.post(
        f"/cases/{other.number}/shares/{share_id}/revoke",
        data={"csrf_token": csrf_token(client, "/")},
    )
    assert response.status_code == 404


def test_the_report_pdf(app, people, case, shared, recipient):
    sign_report(app, case, people.radiologist)
    open_and_verify(app, recipient, shared)
    response = recipient.get("/shared/case/report.pdf")
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    pdf_text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(response.data)).pages)
    assert FINDINGS in pdf_text
    assert len(audit_rows(app, "share.report_downloaded")) == 1


def test_no_pdf_before_a_report_is_signed(app, case, shared, recipient):
    open_and_verify(app, recipient, shared)
    assert "/shared/case/report.pdf" not in text(recipient.get("/shared/case"))
    assert recipient.get("/shared/case/report.pdf").status_code == 404


def test_a_study_downloads_as_a_zip_of_its_own_files(app, people, case, shared, recipient):
    other = cs.submit(app, people.physician, sample="MR_small.dcm")
    with app.app_context():
        study_id = db.session.get(Case, case.id).studies[0].study_id
        other_study_id = db.session.get(Case, other.id).studies[0].study_id
        expected = set(
            db.session.scalars(
                select(Instance.sop_instance_uid).join(Series).where(Series.study_id == study_id)
            )
        )
    open_and_verify(app, recipient, shared)
    assert f"/shared/case/studies/{study_id}.zip" in text(recipient.get("/shared/case"))

    response = recipient.get(f"/shared/case/studies/{study_id}.zip")
    assert response.status_code == 200 and response.mimetype == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.data)) as archive:
        assert archive.testzip() is None
        found = {pydicom.dcmread(archive.open(name)).SOPInstanceUID for name in archive.namelist()}
    assert found == expected

    assert recipient.get(f"/shared/case/studies/{other_study_id}.zip").status_code == 404
    (row,) = audit_rows(app, "share.study_downloaded")
    assert row.details == f'{{"study_id": {study_id}}}'


def test_a_signed_in_user_keeps_their_own_identity(app, people, case, shared, recipient):
    AuthActions(recipient).login(people.patient)  # someone else's portal session, same browser
    open_and_verify(app, recipient, shared)
    assert recipient.get("/shared/case").status_code == 200
    assert people.patient.email in text(recipient.get("/account/"))
    (viewed,) = audit_rows(app, "share.viewed")
    assert viewed.actor_id is None  # the share's views are the recipient's, not the account's


# --- the sharer's list ----------------------------------------------------------------
def render_panel(app, case: Case, user) -> str:
    with app.test_request_context("/"), app.app_context():
        fresh = db.session.get(Case, case.id)
        return render_template(
            "shares/_case_shares.html",
            case=fresh,
            view=View.FULL,
            current_user=db.session.merge(user),
        )


@pytest.mark.parametrize("app", ["sqlite", "postgresql"], indirect=True)
def test_the_sharer_sees_every_view_and_download(app, client, people, case, shared, recipient):
    sign_report(app, case, people.radiologist)
    open_and_verify(app, recipient, shared)
    recipient.get("/shared/case")
    recipient.get("/shared/case/report.pdf")
    with app.app_context():
        study_id = db.session.get(Case, case.id).studies[0].study_id
    recipient.get(f"/shared/case/studies/{study_id}.zip").get_data()

    html = text(client.get(f"/cases/{case.number}"))  # the physician's case page
    assert "outside@clinic.example" in html and "active" in html and "Revoke" in html
    labels = re.findall(r"<time datetime=\"[^\"]+\">[^<]+</time> ([^<]+)</li>", html)
    assert labels == [
        "Shared",
        "Link opened",
        "Code sent",
        "Code accepted",
        "Case viewed",
        "Report PDF downloaded",
        "Study downloaded",
    ]
    assert "Share with a clinician" in render_panel(app, case, people.admin)
    assert render_panel(app, case, people.patient).strip() == ""
    assert render_panel(app, case, people.radiologist).strip() == ""
