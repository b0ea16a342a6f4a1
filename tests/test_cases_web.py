"""The case pages through Flask's test client: the request form, the lists, the case page,
its buttons and attachment downloads, and who sees what."""

from __future__ import annotations

import io
import json
import re
from datetime import date, timedelta
from html import unescape

import pytest
from sqlalchemy import select
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

from portal.audit.models import AuditEvent
from portal.cases import transitions
from portal.cases.forms import CONSENT_TEXT
from portal.cases.models import Case, CaseAttachment
from portal.cases.states import State
from portal.errors import InvalidInput
from portal.extensions import db
from portal.notifications.models import Notification
from portal.storage import get_storage
from portal.studies.models import Study
from tests import case_support as cs
from tests.conftest import AuthActions, csrf_token
from tests.test_auth import field_errors as escaped_field_errors
from tests.test_auth import location, text

PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
DICOM_NAME = "CompressedSamples"  # the patient name inside CT_small.dcm and MR_small.dcm


@pytest.fixture
def people(create_user):
    class People:
        patient = create_user("patient", name="Jane Roe")
        other_patient = create_user("patient", name="Olga Other")
        physician = create_user("physician", name="Dr Paul Phys")
        admin = create_user("admin", name="Ada Admin")
        rad1 = create_user("radiologist", name="Dr Rad One")
        rad2 = create_user("radiologist", name="Dr Rad Two")

    return People


def field_errors(html: str, field_id: str) -> str:
    return unescape(escaped_field_errors(html, field_id))


def browser(app, user):
    """Return a new test client signed in as ``user``."""
    client = app.test_client()
    AuthActions(client).login(user)
    return client


def post(client, path: str, data: dict | None = None, page: str = "/cases/"):
    """POST ``data`` with the session's CSRF token, files encoded in memory.

    (Werkzeug's test client spools large bodies to a temporary file it never closes.)
    """
    values = MultiDict({"csrf_token": csrf_token(client, page)})
    for key, value in (data or {}).items():
        for item in value if isinstance(value, list) else [value]:
            values.add(key, FileStorage(item[0], item[1]) if isinstance(item, tuple) else item)
    boundary, body = encode_multipart(values)
    return client.post(path, data=body, content_type=f"multipart/form-data; boundary={boundary}")


def study_of(app, user, sample: str = "CT_small.dcm") -> int:
    with app.app_context():
        return cs.ingest_sample(db.session.merge(user), sample)


def audit(app, case_id: int | None = None, action: str | None = None) -> list[AuditEvent]:
    query = select(AuditEvent).order_by(AuditEvent.seq)
    if case_id is not None:
        query = query.where(AuditEvent.case_id == case_id)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    with app.app_context():
        rows = db.session.scalars(query).all()
        db.session.expunge_all()
        return rows


def outbox(app, case_id: int) -> list[Notification]:
    with app.app_context():
        rows = db.session.scalars(
            select(Notification).where(Notification.case_id == case_id).order_by(Notification.id)
        ).all()
        db.session.expunge_all()
        return rows


def only_case(app) -> Case:
    with app.app_context():
        (case_id,) = db.session.scalars(select(Case.id)).all()
    return cs.load(app, case_id)


def case_count(app) -> int:
    with app.app_context():
        return len(db.session.scalars(select(Case.id)).all())


def stored_attachment_keys(app) -> list[str]:
    with app.app_context():
        return list(get_storage().iter_keys("attachments/"))


def patient_request(study_id: int, **fields) -> dict:
    return {
        "clinical_question": "Is the nodule larger than last year?",
        "history": "Smoker for 20 years.",
        "urgency": "urgent",
        "subspecialty": "chest",
        "studies": [str(study_id)],
        "consent": "y",
        **fields,
    }


# --- the request form -----------------------------------------------------------------
def test_the_request_form_shows_each_urgencys_sla_the_studies_and_the_consent(app, people):
    study_of(app, people.patient)
    html = text(browser(app, people.patient).get("/cases/new"))
    assert "STAT: report within 1 hour" in html
    assert "Urgent: report within 4 hours" in html
    assert "Routine: report within 48 hours" in html
    assert re.search(r'value="routine"[^>]*checked|checked[^>]*value="routine"', html)
    assert '<option selected value="general">' in html
    assert "CT, " in html and 'name="studies"' in html
    assert CONSENT_TEXT in html
    assert "choose the files again" in html


def test_a_requester_without_studies_is_sent_to_the_upload_page(app, people):
    html = text(browser(app, people.patient).get("/cases/new"))
    assert 'href="/studies/upload"' in html and "not uploaded any studies" in html


@pytest.mark.parametrize("role", ["rad1", "admin"])
def test_only_patients_and_physicians_request(app, people, role):
    assert browser(app, getattr(people, role)).get("/cases/new").status_code == 403


def test_each_missing_field_is_named_next_to_it_and_the_rest_is_kept(app, people):
    study_of(app, people.patient)
    client = browser(app, people.patient)
    response = post(
        client,
        "/cases/new",
        {
            "history": "Keeps <this> history",
            "urgency": "stat",
            "subspecialty": "neuro",
            "notify_phone": "+44 7700 900123",
            "sms_opt_in": "y",
            "subject_birth_date": "1975-11-24",
            "deidentify": "y",
        },
        page="/cases/new",
    )
    assert response.status_code == 400
    html = text(response)
    assert "Ask the question" in field_errors(html, "clinical_question")
    assert "at least one study" in field_errors(html, "studies")
    assert "consent" in field_errors(html, "consent")
    for kept in ("history", "notify_phone", "subject_birth_date", "urgency", "subspecialty"):
        assert field_errors(html, kept) == ""
    assert "Keeps &lt;this&gt; history</textarea>" in html
    assert re.search(r'checked[^>]*value="stat"|value="stat"[^>]*checked', html)
    assert '<option selected value="neuro">' in html
    assert 'value="+44 7700 900123"' in html and 'value="1975-11-24"' in html
    assert re.search(r'id="sms_opt_in"[^>]*checked|checked[^>]*id="sms_opt_in"', html)
    assert re.search(r'id="deidentify"[^>]*checked|checked[^>]*id="deidentify"', html)
    assert case_count(app) == 0


def test_a_physician_must_name_the_patient_and_give_a_birth_date(app, people):
    study_id = study_of(app, people.physician, "MR_small.dcm")
    client = browser(app, people.physician)
    html = text(client.get("/cases/new"))
    assert 'id="subject_name"' in html and CONSENT_TEXT not in html
    response = post(
        client,
        "/cases/new",
        {
            "clinical_question": "Meniscal tear?",
            "studies": [str(study_id)],
            "subject_email": "not an email",
            "subject_phone": "call me",
        },
        page="/cases/new",
    )
    assert response.status_code == 400
    html = text(response)
    assert "patient's name" in field_errors(html, "subject_name")
    assert "date of birth" in field_errors(html, "subject_birth_date")
    assert field_errors(html, "subject_email") and field_errors(html, "subject_phone")
    assert "Meniscal tear?</textarea>" in html
    assert re.search(rf'checked[^>]*value="{study_id}"|value="{study_id}"[^>]*checked', html)
    assert case_count(app) == 0


@pytest.mark.parametrize(
    ("fields", "field_id", "message"),
    [
        ({"sms_opt_in": "y"}, "notify_phone", "Give a mobile number"),
        ({"notify_phone": "07700 900123"}, "notify_phone", "international format"),
        ({"subject_birth_date": "2999-01-01"}, "subject_birth_date", "between 1900 and today"),
        ({"subject_birth_date": "24/11/1975"}, "subject_birth_date", "Not a valid date"),
        ({"urgency": "whenever"}, "urgency", "Not a valid choice"),
    ],
)
def test_malformed_answers_are_refused_next_to_their_field(app, people, fields, field_id, message):
    study_id = study_of(app, people.patient)
    client = browser(app, people.patient)
    response = post(client, "/cases/new", patient_request(study_id, **fields), page="/cases/new")
    assert response.status_code == 400
    assert message in field_errors(text(response), field_id)
    assert case_count(app) == 0


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ([(b"MZ\x90\x00 not a pdf at all", "report.pdf")], "report.pdf is not a PDF, PNG or JPEG"),
        ([(b"%PDF-1.4\n" + b"x" * (1024 * 1024), "big.pdf")], "big.pdf is larger than 1 MB"),
        ([(b"", "empty.pdf")], "empty.pdf is empty"),
        ([(PDF, "good.pdf"), (b"GIF89a", "scan.gif")], "scan.gif is not a PDF, PNG or JPEG"),
    ],
    ids=["wrong-type", "too-big", "empty", "good-then-bad"],
)
def test_bad_attachments_are_refused_and_nothing_is_stored(app, people, files, message):
    app.config["ATTACHMENT_MAX_MB"] = 1
    study_id = study_of(app, people.patient)
    client = browser(app, people.patient)
    data = patient_request(study_id, attachments=[(io.BytesIO(body), name) for body, name in files])
    response = post(client, "/cases/new", data, page="/cases/new")
    assert response.status_code == 400
    html = text(response)
    assert message in field_errors(html, "attachments")
    assert "Is the nodule larger than last year?</textarea>" in html
    assert "choose your prior reports again" in html.lower()
    assert case_count(app) == 0 and stored_attachment_keys(app) == []


def test_a_refusal_from_the_operations_is_shown_and_the_attachments_removed(
    app, people, monkeypatch
):
    def refuse(studies, owner, number):
        raise InvalidInput("A study could not be de-identified: no pixel data")

    monkeypatch.setattr("portal.cases.views.make_reading_copies", refuse)
    study_id = study_of(app, people.patient)
    client = browser(app, people.patient)
    data = patient_request(study_id, deidentify="y", attachments=[(io.BytesIO(PDF), "a.pdf")])
    response = post(client, "/cases/new", data, page="/cases/new")
    assert response.status_code == 400
    assert "could not be de-identified: no pixel data" in text(response)
    assert case_count(app) == 0 and stored_attachment_keys(app) == []


def test_a_patients_request_records_consent_and_its_prior_report(app, people, frozen_clock):
    study_id = study_of(app, people.patient)
    client = browser(app, people.patient)
    data = patient_request(
        study_id,
        subject_birth_date="1975-11-24",
        attachments=[(io.BytesIO(PDF), "old report.pdf"), (io.BytesIO(PNG), "key image.png")],
    )
    response = post(client, "/cases/new", data, page="/cases/new")
    case = only_case(app)
    assert location(response) == f"/cases/{case.number}"
    assert (case.state, case.urgency, case.subspecialty) == ("submitted", "urgent", "chest")
    assert case.consent_text == CONSENT_TEXT and case.consent_at == frozen_clock.moment
    assert case.subject_name == "Jane Roe" and case.subject_birth_date == date(1975, 11, 24)
    assert case.sla_due_at == frozen_clock.moment + timedelta(hours=4)
    assert [(a.filename, a.content_type) for a in case.attachments] == [
        ("old report.pdf", "application/pdf"),
        ("key image.png", "image/png"),
    ]
    assert len(stored_attachment_keys(app)) == 2
    assert [e.action for e in audit(app, case.id)] == ["case.submit"]
    assert {(n.recipient, n.kind) for n in outbox(app, case.id) if n.channel == "email"} >= {
        (people.patient.email, "case.submit"),
        (people.admin.email, "case.admin-submit"),
    }
    page = text(client.get(f"/cases/{case.number}"))
    assert f"Your request is sent: case {case.number}" in page
    assert "Request submitted" in page and "Is the nodule larger" in page


def test_a_physicians_request_names_the_patient(app, people):
    study_id = study_of(app, people.physician, "MR_small.dcm")
    client = browser(app, people.physician)
    data = {
        "clinical_question": "Meniscal tear?",
        "urgency": "routine",
        "subspecialty": "msk",
        "studies": [str(study_id)],
        "subject_name": "Peter Patient",
        "subject_birth_date": "1980-02-29",
        "subject_email": "peter@example.org",
        "subject_phone": "+1 (555) 555-0100",
    }
    response = post(client, "/cases/new", data, page="/cases/new")
    case = only_case(app)
    assert location(response) == f"/cases/{case.number}"
    assert (case.subject_name, case.subject_birth_date) == ("Peter Patient", date(1980, 2, 29))
    assert (case.subject_email, case.subject_phone) == ("peter@example.org", "+15555550100")
    assert case.referring_physician_id == people.physician.id and case.consent_text is None
    listing = text(client.get("/cases/"))
    assert f"Case {case.number}" in listing and "Peter Patient" in listing


def test_sms_opt_in_gives_text_messages_that_never_name_the_patient(app, people):
    study_id = study_of(app, people.patient)
    client = browser(app, people.patient)
    data = patient_request(study_id, notify_phone="+44 7700 900123", sms_opt_in="y")
    post(client, "/cases/new", data, page="/cases/new")
    case = only_case(app)
    assert case.sms_opt_in and case.notify_phone == "+447700900123"
    cs.accept(app, cs.offer(app, case, people.rad1), people.rad1)
    sms = [n for n in outbox(app, case.id) if n.channel == "sms"]
    assert [n.kind for n in sms] == ["case.submit", "case.offer", "case.accept"]
    assert all(n.recipient == "+447700900123" for n in sms)
    for row in sms:
        assert "Jane" not in row.body and "Roe" not in row.body and DICOM_NAME not in row.body


def test_a_deidentified_request_is_read_from_copies_without_the_patients_name(app, people):
    study_id = study_of(app, people.patient)
    client = browser(app, people.patient)
    data = patient_request(study_id, deidentify="y", subject_birth_date="1975-11-24")
    post(client, "/cases/new", data, page="/cases/new")
    case = only_case(app)
    assert case.deidentify
    (link,) = case.studies
    assert link.study_id == study_id and link.reading_study_id not in (None, study_id)
    with app.app_context():
        copy = db.session.get(Study, link.reading_study_id)
        assert DICOM_NAME not in copy.patient.name
    cs.accept(app, cs.offer(app, case, people.rad1), people.rad1)

    page = text(browser(app, people.rad1).get(f"/cases/{case.number}"))
    assert "Is the nodule larger" in page and "Smoker for 20 years." in page
    assert "Jane" not in page and "Roe" not in page and DICOM_NAME not in page
    assert "1975" not in page and "50-59" in page
    assert "de-identified copies" in page

    own = text(client.get(f"/cases/{case.number}"))
    assert "Jane Roe" in own and "1975-11-24" in own


# --- who sees what -----------------------------------------------------------------------
@pytest.fixture
def offered(app, people):
    """A physician's case (patient Jane Roe) with a prior report, offered to rad1."""
    case = cs.submit(
        app,
        people.physician,
        sample="MR_small.dcm",
        subject_name="Jane Roe",
        subject_birth_date=date(1970, 5, 17),
        clinical_question="Secret question?",
        history="Secret history.",
    )
    with app.app_context():
        stored = db.session.get(Case, case.id)
        from portal.cases.attachments import store_attachment

        stored.attachments.append(
            store_attachment(io.BytesIO(PDF), "prior.pdf", people.physician.id)
        )
        db.session.commit()
    return cs.offer(app, case, people.rad1, by=people.admin)


def attachment_path(app, case) -> str:
    with app.app_context():
        attachment_id = db.session.scalar(
            select(CaseAttachment.id).where(CaseAttachment.case_id == case.id)
        )
    return f"/cases/{case.number}/attachments/{attachment_id}"


@pytest.mark.parametrize("who", ["other_patient", "rad2", "patient"])
def test_a_case_is_not_found_for_anyone_it_is_not_for(app, people, offered, who):
    client = browser(app, getattr(people, who))
    assert client.get(f"/cases/{offered.number}").status_code == 404
    assert client.get(attachment_path(app, offered), buffered=True).status_code == 404
    assert f"Case {offered.number}" not in text(client.get("/cases/"))


def test_an_offered_radiologist_sees_only_the_summary(app, people, offered):
    client = browser(app, people.rad1)
    response = client.get(f"/cases/{offered.number}")
    assert response.status_code == 200
    page = text(response)
    assert "<dd>MR</dd>" in page and "50-59" in page and "Accept" in page and "Decline" in page
    for secret in ("Jane", "Roe", "1970", "Secret question", "Secret history", "prior.pdf"):
        assert secret not in page
    assert DICOM_NAME not in page and "Timeline" not in page and "/viewer/" not in page
    assert client.get(attachment_path(app, offered), buffered=True).status_code == 404
    listing = text(client.get("/cases/"))
    assert f"Case {offered.number}" in listing and "Urgent MR" in listing
    assert "Jane" not in listing and "Secret" not in listing
    (event,) = audit(app, offered.id, "case.viewed")
    assert event.actor_id == people.rad1.id and json.loads(event.details) == {"view": "offer"}


def test_an_admins_view_and_download_are_audited(app, people, offered):
    client = browser(app, people.admin)
    page = text(client.get(f"/cases/{offered.number}"))
    assert "Jane Roe" in page and "Secret question?" in page and "Dr Rad One" in page  # offers
    download = client.get(attachment_path(app, offered), buffered=True)
    assert download.status_code == 200 and download.data == PDF
    assert download.mimetype == "application/pdf"
    assert download.headers["Content-Disposition"] == "attachment; filename=prior.pdf"
    assert download.headers["X-Content-Type-Options"] == "nosniff"
    assert download.headers["Cache-Control"] == "no-store"
    viewed = audit(app, offered.id, "case.viewed")
    assert [(e.actor_id, e.target) for e in viewed] == [(people.admin.id, offered.number)]
    (downloaded,) = audit(app, offered.id, "case.attachment_downloaded")
    assert downloaded.actor_id == people.admin.id
    assert "prior.pdf" not in downloaded.details


def test_the_reader_sees_the_whole_case_once_accepted(app, people, offered):
    client = browser(app, people.rad1)
    response = post(client, f"/cases/{offered.number}/accept")
    assert location(response) == f"/cases/{offered.number}"
    page = text(client.get(f"/cases/{offered.number}"))
    assert "You accepted case" in page
    assert "Jane Roe" in page and "1970-05-17" in page and "Secret question?" in page
    assert "prior.pdf" in page and "Accepted by Dr Rad One" in page
    assert client.get(attachment_path(app, offered), buffered=True).status_code == 200
    assert f'href="/viewer/{offered.number}"' in page
    assert client.get(f"/viewer/{offered.number}").status_code == 200  # through the sign-in


# --- buttons ------------------------------------------------------------------------------
def kinds(app, case_id: int, recipient: str) -> list[str]:
    return [n.kind for n in outbox(app, case_id) if n.recipient == recipient]


def test_offer_decline_and_accept_from_the_web(app, people):
    case = cs.submit(app, people.patient)
    admin = browser(app, people.admin)
    response = post(
        admin,
        f"/cases/{case.number}/offer",
        {"radiologists": [str(people.rad1.id), str(people.rad2.id)]},
    )
    assert location(response) == f"/cases/{case.number}"
    assert cs.load(app, case).state == State.OFFERED
    assert "case.offer" in kinds(app, case.id, people.rad1.email)

    rad2 = browser(app, people.rad2)
    response = post(rad2, f"/cases/{case.number}/decline", {"decline_reason": "Not my field"})
    assert location(response) == "/cases/"
    assert "case.admin-decline" in kinds(app, case.id, people.admin.email)
    assert "You declined case" in text(rad2.get("/cases/"))
    assert rad2.get(f"/cases/{case.number}").status_code == 404

    rad1 = browser(app, people.rad1)
    assert "Dr Rad Two" not in text(rad1.get(f"/cases/{case.number}"))
    post(rad1, f"/cases/{case.number}/accept")
    stored = cs.load(app, case)
    assert stored.state == State.ACCEPTED and stored.assignee_id == people.rad1.id
    assert [e.action for e in audit(app, case.id) if e.action != "case.viewed"] == [
        "case.submit",
        "case.offer",
        "case.decline",
        "case.accept",
    ]
    assert "case.accept" in kinds(app, case.id, people.patient.email)

    own = text(browser(app, people.patient).get(f"/cases/{case.number}"))
    assert "Offered to radiologists" in own and "A radiologist declined" in own
    assert "Accepted by Dr Rad One" in own
    assert "Dr Rad Two" not in own and "Not my field" not in own
    assert "Not my field" in text(admin.get(f"/cases/{case.number}"))


def test_the_requester_cancels_while_nobody_has_accepted(app, people):
    case = cs.offer(app, cs.submit(app, people.patient), people.rad1)
    client = browser(app, people.patient)
    page = text(client.get(f"/cases/{case.number}"))
    assert "Cancel case" in page and "Offered to radiologists" in page and "Dr Rad" not in page
    response = post(client, f"/cases/{case.number}/cancel", {"cancel_reason": "Got an answer"})
    assert location(response) == f"/cases/{case.number}"
    assert cs.load(app, case).state == State.CANCELLED
    assert audit(app, case.id, "case.cancel")[0].actor_id == people.patient.id
    assert "case.withdrawn-cancel" in kinds(app, case.id, people.rad1.email)
    page = text(client.get(f"/cases/{case.number}"))
    assert "Cancelled" in page and "Got an answer" in page and "Cancel case" not in page


def test_a_move_the_requester_may_not_make_is_refused_and_audited(app, people):
    case = cs.accept(app, cs.offer(app, cs.submit(app, people.patient), people.rad1), people.rad1)
    client = browser(app, people.patient)
    assert "Cancel case" not in text(client.get(f"/cases/{case.number}"))
    response = post(client, f"/cases/{case.number}/cancel")
    assert response.status_code == 403
    assert cs.load(app, case).state == State.ACCEPTED
    assert audit(app, case.id, "case.move_refused")[0].actor_id == people.patient.id
    assert post(client, f"/cases/{case.number}/close").status_code == 409  # not reported yet


def sign_report(app, case, radiologist):
    with app.app_context():
        locked = transitions.lock_case(case.id)
        transitions.apply(locked, "sign_report", db.session.merge(radiologist))
        locked.reported_at = locked.updated_at
        db.session.commit()


def test_after_the_report_the_requester_asks_for_an_overread_then_closes(app, people):
    case = cs.accept(app, cs.offer(app, cs.submit(app, people.patient), people.rad1), people.rad1)
    sign_report(app, case, people.rad1)
    client = browser(app, people.patient)
    page = text(client.get(f"/cases/{case.number}"))
    assert "Request an overread" in page and "Close case" in page
    post(client, f"/cases/{case.number}/request-overread", {"overread_note": "Check the left lobe"})
    assert cs.load(app, case).state == State.OVERREAD_REQUESTED
    assert "case.admin-request_overread" in kinds(app, case.id, people.admin.email)

    admin = browser(app, people.admin)
    post(admin, f"/cases/{case.number}/offer", {"radiologists": [str(people.rad2.id)]})
    rad2 = browser(app, people.rad2)
    assert "Accept overread" in text(rad2.get(f"/cases/{case.number}"))
    post(rad2, f"/cases/{case.number}/accept")
    assert cs.load(app, case).overreader_id == people.rad2.id
    page = text(client.get(f"/cases/{case.number}"))
    assert "Overread requested" in page and "Check the left lobe" in page
    assert "Overread accepted by Dr Rad Two" in page
    with app.app_context():
        transitions.apply(
            transitions.lock_case(case.id), "sign_overread", db.session.merge(people.rad2)
        )
        db.session.commit()
    post(client, f"/cases/{case.number}/close")
    assert cs.load(app, case).state == State.CLOSED
    actions = [e.action for e in audit(app, case.id) if e.action != "case.viewed"]
    assert actions[-5:] == [
        "case.request_overread",
        "case.offer_overread",
        "case.accept_overread",
        "case.sign_overread",
        "case.close",
    ]
    assert "case.close" in kinds(app, case.id, people.patient.email)


def test_the_radiologist_who_loses_the_accept_race_is_told_clearly(app, people):
    case = cs.offer(app, cs.submit(app, people.patient), people.rad1, people.rad2)
    rad1, rad2 = browser(app, people.rad1), browser(app, people.rad2)
    token = csrf_token(rad2, "/cases/")  # rad2's page was open before rad1 accepted
    post(rad1, f"/cases/{case.number}/accept")
    response = rad2.post(f"/cases/{case.number}/accept", data={"csrf_token": token})
    assert location(response) == "/cases/"
    listing = text(rad2.get("/cases/"))
    assert "already accepted by another radiologist" in listing
    stored = cs.load(app, case)
    assert stored.assignee_id == people.rad1.id
    assert len(audit(app, case.id, "case.accept")) == 1


def test_a_radiologist_never_offered_the_case_cannot_accept_it(app, people):
    case = cs.offer(app, cs.submit(app, people.patient), people.rad1)
    response = post(browser(app, people.rad2), f"/cases/{case.number}/accept")
    assert response.status_code == 404
    assert cs.load(app, case).state == State.OFFERED
