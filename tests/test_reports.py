"""Reports: drafts (form and autosave), signing with a password or code, addenda, overreads."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask import render_template
from sqlalchemy import select

from portal.audit.models import AuditEvent
from portal.auth.models import User
from portal.cases.access import View
from portal.cases.models import Case
from portal.cases.states import State
from portal.extensions import db
from portal.notifications.models import Notification
from portal.reports import content, operations
from portal.reports.models import Kind, Report, SignedReportChanged
from tests import case_support as cs
from tests import report_support as rs
from tests.conftest import PASSWORD, csrf_token, totp_now


@pytest.fixture
def people(create_user):
    class People:
        patient = create_user("patient", name="Jane Roe")
        admin = create_user("admin")
        reader = create_user("radiologist", name="Dr Ada Reader")
        overreader = create_user("radiologist", name="Dr Bo Second")
        outsider = create_user("radiologist", name="Dr Cy Elsewhere")

    return People


@pytest.fixture
def case(app, people):
    return rs.accepted_case(app, people.patient, people.reader)


def _reports(app, case) -> list[Report]:
    with app.app_context():
        reports = db.session.scalars(
            select(Report).where(Report.case_id == case.id).order_by(Report.id)
        ).all()
        db.session.expunge_all()
        return reports


def _audit(app, action: str) -> list[AuditEvent]:
    with app.app_context():
        events = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)
        ).all()
        db.session.expunge_all()
        return events


def _autosave(client, case, data, kind="report", token=None, **headers):
    headers = {"Accept": "application/json", **headers}
    if token:
        headers["X-CSRFToken"] = token
    return client.post(f"/cases/{case.number}/{kind}/draft", json=data, headers=headers)


def _sign_form(case, kind="report", **credentials):
    return {**rs.TEXT[Kind(kind)], "sign": "Sign", **credentials}


@pytest.fixture
def save(post_form):
    """``save(case, data, kind="report")``: post the writing form as its page would."""

    def post(case, data, kind="report"):
        page = f"/cases/{case.number}/{kind}"
        return post_form(f"{page}/save", data, page=page)

    return post


# --- drafts ---------------------------------------------------------------------------
def test_the_assignee_saves_a_draft_with_the_form(app, client, auth, save, people, case):
    auth.login(people.reader)
    page = client.get(f"/cases/{case.number}/report")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Save draft" in html and 'name="agreement"' in html and 'name="password"' in html
    assert f'data-autosave-url="/cases/{case.number}/report/draft"' in html
    assert "js/report.js" in html and 'name="csrf-token"' in html

    path = f"/cases/{case.number}/report"
    saved = save(case, {"findings": "Clear lungs.", "agreement": "agree", "save": "Save"})
    assert saved.status_code == 302 and saved.headers["Location"].endswith(path)
    (draft,) = _reports(app, case)
    assert (draft.findings, draft.agreement, draft.signed_at) == ("Clear lungs.", "agree", None)
    assert "Clear lungs." in client.get(path).get_data(as_text=True)
    assert [e.target for e in _audit(app, "report.draft_started")] == [f"report:{draft.id}"]


def test_autosave_stores_the_json_draft_and_needs_the_csrf_token(app, client, auth, people, case):
    auth.login(people.reader)
    refused = _autosave(client, case, {"findings": "first"})
    assert refused.status_code == 400 and _reports(app, case) == []

    token = csrf_token(client, f"/cases/{case.number}/report")
    first = _autosave(client, case, {"findings": "first", "password": "ignored"}, token=token)
    assert first.status_code == 200 and "saved_at" in first.get_json()
    second = _autosave(client, case, {"findings": "second", "impression": "None."}, token=token)
    assert second.get_json()["id"] == first.get_json()["id"]
    (draft,) = _reports(app, case)
    assert (draft.findings, draft.impression) == ("second", "None.")

    bad = _autosave(client, case, {"agreement": "maybe"}, token=token)
    assert bad.status_code == 400 and "agree" in bad.get_json()["message"]
    assert _autosave(client, case, ["not", "an", "object"], token=token).status_code == 400


@pytest.mark.parametrize(("who", "status"), [("outsider", 404), ("patient", 403)])
def test_only_the_assignee_writes_the_report(app, client, auth, people, case, who, status):
    auth.login(getattr(people, who))
    token = csrf_token(client, "/")
    path = f"/cases/{case.number}/report"
    assert _autosave(client, case, {"findings": "x"}, token=token).status_code == status
    form = {"findings": "x", "save": "Save", "csrf_token": token}
    assert client.post(f"{path}/save", data=form).status_code == status
    assert _reports(app, case) == []
    if status == 403:
        assert "authz.denied" in [e.action for e in _audit(app, "authz.denied")]
        assert "No report has been signed yet" in client.get(path).get_data(as_text=True)
    else:
        assert client.get(path).status_code == 404


def test_an_offered_radiologist_sees_no_report_page(app, client, auth, people):
    case = cs.offer(app, cs.submit(app, people.patient), people.outsider)
    auth.login(people.outsider)
    assert client.get(f"/cases/{case.number}/report").status_code == 403


# --- signing --------------------------------------------------------------------------
@pytest.mark.parametrize("app", ["sqlite", "postgresql"], indirect=True)
def test_signing_with_the_password_freezes_the_report_and_moves_the_case(
    app, client, auth, save, people, case
):
    auth.login(people.reader)
    path = f"/cases/{case.number}/report"
    signed = save(case, _sign_form(case, password=PASSWORD))
    assert signed.status_code == 302 and signed.headers["Location"].endswith(path)

    (report,) = _reports(app, case)
    assert report.signed_with == "password" and report.signed_at is not None
    with app.app_context():
        stored = db.session.get(Report, report.id)
        assert content.hash_matches(stored, case.number)
        fresh = db.session.get(Case, case.id)
        assert fresh.state == State.REPORTED and fresh.reported_at == report.signed_at
        told = db.session.scalars(
            select(Notification).where(
                Notification.case_id == case.id, Notification.kind == "case.sign_report"
            )
        ).all()
        assert [n.recipient for n in told] == [people.patient.email]
    (event,) = _audit(app, "report.signed")
    assert (event.case_id, event.target) == (case.id, f"report:{report.id}")
    assert report.content_hash in event.details and "No pulmonary" not in event.details

    page = client.get(path).get_data(as_text=True)
    assert "No pulmonary embolism." in page and report.content_hash in page
    assert "Add addendum" in page and "Download PDF" in page


def test_signing_with_a_current_code_and_not_a_replayed_one(
    app, client, auth, save, people, case, frozen_clock
):
    auth.login(people.reader)  # uses the code of this 30-second step
    replayed = save(case, _sign_form(case, code=totp_now(people.reader)))
    assert replayed.status_code == 401 and _reports(app, case)[0].signed_at is None

    frozen_clock.advance(timedelta(seconds=30))
    signed = save(case, _sign_form(case, code=totp_now(people.reader)))
    assert signed.status_code == 302
    assert _reports(app, case)[0].signed_with == "totp"
    assert cs.load(app, case).state == State.REPORTED


@pytest.mark.parametrize("credential", ["password", "code"])
def test_wrong_credentials_are_refused_audited_and_freeze_nothing(
    app, client, auth, save, people, case, credential
):
    auth.login(people.reader)
    wrong = {"password": "not my password"} if credential == "password" else {"code": "000000"}
    refused = save(case, _sign_form(case, **wrong))
    assert refused.status_code == 401
    assert "not valid" in refused.get_data(as_text=True) or "Wrong" in refused.get_data(
        as_text=True
    )

    (draft,) = _reports(app, case)
    assert draft.signed_at is None and draft.content_hash is None
    assert draft.impression == "No pulmonary embolism."  # the draft itself was kept
    assert cs.load(app, case).state == State.ACCEPTED
    (failed,) = _audit(app, "report.sign_failed")
    assert (failed.case_id, failed.target) == (case.id, f"report:{draft.id}")
    assert _audit(app, "report.signed") == []
    with app.app_context():
        assert db.session.get(User, people.reader.id).failed_logins == 1


def test_failed_signatures_lock_the_account_like_failed_sign_ins(
    app, client, auth, save, people, case
):
    auth.login(people.reader)
    for _ in range(app.config["LOGIN_MAX_FAILURES"]):
        save(case, _sign_form(case, password="not my password"))
    locked = save(case, _sign_form(case, password=PASSWORD))
    assert locked.status_code == 401 and "locked" in locked.get_data(as_text=True)
    assert _reports(app, case)[0].signed_at is None


@pytest.mark.parametrize(
    ("blank", "message"),
    [("impression", "Write the impression"), ("agreement", "Choose whether you agree")],
)
def test_a_report_needs_impression_and_agreement(
    app, client, auth, save, people, case, blank, message
):
    auth.login(people.reader)
    form = {**_sign_form(case, password=PASSWORD), blank: ""}
    if blank == "agreement":
        del form["agreement"]
    refused = save(case, form)
    assert refused.status_code == 400 and message in refused.get_data(as_text=True)
    (draft,) = _reports(app, case)
    assert draft.signed_at is None and draft.findings == rs.REPORT_TEXT["findings"]
    assert _audit(app, "report.sign_failed") == []  # credentials were not even tried


def test_both_password_and_code_is_refused(app, client, auth, save, people, case):
    auth.login(people.reader)
    both = _sign_form(case, password=PASSWORD, code="123456")
    refused = save(case, both)
    assert refused.status_code == 400 and "either your password or the code" in refused.get_data(
        as_text=True
    )


def test_a_signed_report_is_never_changed(app, client, auth, save, people, case):
    report = rs.sign(app, case, people.reader)
    auth.login(people.reader)
    token = csrf_token(client, f"/cases/{case.number}/report")
    assert _autosave(client, case, {"impression": "changed"}, token=token).status_code == 409
    form = {"impression": "changed", "save": "Save", "csrf_token": token}
    assert client.post(f"/cases/{case.number}/report/save", data=form).status_code == 409

    with app.app_context():
        stored = db.session.get(Report, report.id)
        with pytest.raises(operations.ReportSigned):
            operations.save_draft(stored, stored.author, {"impression": "changed"})
        stored.impression = "changed"
        with pytest.raises(SignedReportChanged):
            db.session.flush()
        db.session.rollback()
        db.session.delete(db.session.get(Report, report.id))
        with pytest.raises(SignedReportChanged):
            db.session.flush()
        db.session.rollback()
    assert _reports(app, case)[0].impression == rs.REPORT_TEXT["impression"]


@pytest.mark.parametrize("app", ["sqlite", "postgresql"], indirect=True)
def test_the_content_hash_covers_the_canonical_content(app, people, case):
    report = rs.sign(app, case, people.reader)
    with app.app_context():
        stored = db.session.get(Report, report.id)
        document = content.canonical_content(stored, case.number).decode()
        assert f'"case":"{case.number}"' in document and '"author_name":"Dr Ada Reader"' in document
        assert stored.signed_at.isoformat() in document and '"parent_hash":null' in document
        stored.findings = "tampered"  # not flushed: only the recomputation is checked
        assert not content.hash_matches(stored, case.number)
        db.session.rollback()


# --- addenda --------------------------------------------------------------------------
def test_the_author_adds_a_signed_addendum(app, client, auth, save, people, case):
    report = rs.sign(app, case, people.reader)
    auth.login(people.reader)
    path = f"/cases/{case.number}/addendum"
    page = client.get(path).get_data(as_text=True)
    assert "No pulmonary embolism." in page and 'name="comments"' in page
    assert f'data-autosave-url="/cases/{case.number}/addendum/draft"' in page

    empty = save(case, {"comments": " ", "sign": "Sign", "password": PASSWORD}, "addendum")
    assert empty.status_code == 400 and "Write the addendum" in empty.get_data(as_text=True)
    signed = save(case, _sign_form(case, "addendum", password=PASSWORD), "addendum")
    assert signed.status_code == 302

    report_row, addendum = _reports(app, case)
    assert (addendum.kind, addendum.parent_id) == (Kind.ADDENDUM, report.id)
    assert addendum.signed_at is not None and report_row.content_hash == report.content_hash
    (event,) = _audit(app, "report.addendum_signed")
    assert (event.case_id, event.target) == (case.id, f"report:{addendum.id}")
    with app.app_context():
        told = db.session.scalars(
            select(Notification).where(Notification.kind == f"case.addendum-{addendum.id}")
        ).all()
        assert [n.recipient for n in told] == [people.patient.email]
        assert content.hash_matches(db.session.get(Report, addendum.id), case.number)
    assert cs.load(app, case).state == State.REPORTED

    auth.logout()
    auth.login(people.patient)
    read = client.get(f"/cases/{case.number}/report").get_data(as_text=True)
    assert "Addendum 1" in read and "Incidental 4 mm nodule" in read
    assert client.get(path).status_code == 403


def test_no_addendum_before_the_report_is_signed(app, client, auth, people, case):
    auth.login(people.reader)
    assert client.get(f"/cases/{case.number}/addendum").status_code == 409


# --- overreads ------------------------------------------------------------------------
def test_an_overread_end_to_end_leaves_both_reads_visible(app, client, auth, save, people, case):
    report = rs.sign(app, case, people.reader)
    case = rs.assign_overread(app, case, people.patient, people.admin, people.overreader)
    auth.login(people.reader)
    assert client.get(f"/cases/{case.number}/overread").status_code == 403
    auth.logout()

    auth.login(people.overreader)
    path = f"/cases/{case.number}/overread"
    page = client.get(path).get_data(as_text=True)
    assert "No pulmonary embolism." in page and "Agreement with the report" in page
    vague = save(
        case, {"agreement": "major_discrepancy", "sign": "Sign", "password": PASSWORD}, "overread"
    )
    assert vague.status_code == 400 and "Describe the discrepancy" in vague.get_data(as_text=True)
    assert (
        save(case, _sign_form(case, "overread", password=PASSWORD), "overread").status_code == 302
    )

    _, overread = _reports(app, case)
    assert (overread.kind, overread.parent_id, overread.agreement) == (
        Kind.OVERREAD,
        report.id,
        "minor_discrepancy",
    )
    assert cs.load(app, case).state == State.OVERREAD_DONE
    (event,) = _audit(app, "report.overread_signed")
    assert (event.case_id, event.target) == (case.id, f"report:{overread.id}")
    auth.logout()

    auth.login(people.patient)
    read = client.get(f"/cases/{case.number}/report").get_data(as_text=True)
    assert "No pulmonary embolism." in read and "The nodule measures 6 mm." in read
    assert "Dr Ada Reader" in read and "Dr Bo Second" in read and "Minor discrepancy" in read


def test_a_second_overread_level_follows_the_same_report(app, people, case):
    report = rs.sign(app, case, people.reader)
    case = rs.assign_overread(app, case, people.patient, people.admin, people.overreader)
    rs.sign(app, case, people.overreader, Kind.OVERREAD)
    case = rs.assign_overread(app, case, people.patient, people.admin, people.outsider)
    rs.sign(app, case, people.outsider, Kind.OVERREAD, agreement="agree", comments="")
    kinds = [(r.kind, r.parent_id, r.author_id) for r in _reports(app, case)]
    assert kinds == [
        (Kind.REPORT, None, people.reader.id),
        (Kind.OVERREAD, report.id, people.overreader.id),
        (Kind.OVERREAD, report.id, people.outsider.id),
    ]
    assert cs.load(app, case).state == State.OVERREAD_DONE


# --- reading --------------------------------------------------------------------------
def test_reading_signed_reports_is_audited(app, client, auth, people, case):
    auth.login(people.patient)
    client.get(f"/cases/{case.number}/report")
    assert _audit(app, "report.viewed") == []  # nothing signed, nothing shown

    report = rs.sign(app, case, people.reader)
    page = client.get(f"/cases/{case.number}/report").get_data(as_text=True)
    assert "No pulmonary embolism." in page
    (event,) = _audit(app, "report.viewed")
    assert (event.actor_id, event.case_id, event.target) == (
        people.patient.id,
        case.id,
        f"report:{report.id}",
    )


def _panel(app, case, user, view) -> str:
    with app.test_request_context():
        stored = db.session.get(Case, case.id)
        return render_template(
            "reports/_case_reports.html",
            case=stored,
            view=view,
            current_user=db.session.merge(user),
        )


def test_the_case_page_panel_shows_the_next_step_and_the_signed_parts(app, people, case):
    assert "Write the report" in _panel(app, case, people.reader, View.READER)
    assert _panel(app, case, people.patient, View.FULL).strip() == ""
    with app.app_context():
        operations.start_draft(
            db.session.get(Case, case.id), db.session.merge(people.reader), Kind.REPORT
        )
        db.session.commit()
    assert "Continue draft" in _panel(app, case, people.reader, View.READER)

    rs.sign(app, case, people.reader)
    full = _panel(app, case, people.patient, View.FULL)
    assert "No pulmonary embolism." in full and "Download PDF" in full
    assert "Add addendum" not in full and "Write the report" not in full
    assert "Add addendum" in _panel(app, case, people.reader, View.READER)
    assert _panel(app, case, people.outsider, View.OFFER).strip() == ""
    assert [e.details.count("case page") for e in _audit(app, "report.viewed")] == [1, 1]

    case = rs.assign_overread(app, case, people.patient, people.admin, people.overreader)
    assert "Write the overread" in _panel(app, case, people.overreader, View.READER)
