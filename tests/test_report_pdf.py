"""The report PDF: what it says, what it leaves out, who may download it, and its audit."""

from __future__ import annotations

import io
from datetime import date

import pytest
from pypdf import PdfReader
from sqlalchemy import select

from portal.audit.models import AuditEvent
from portal.cases import operations as case_operations
from portal.cases.models import Case
from portal.cases.reading_copies import make_reading_copies
from portal.cases.states import Urgency
from portal.extensions import db
from portal.reports import content
from portal.reports.models import Kind
from portal.reports.pdf import render_case_pdf, signed_at_text, signed_reports
from portal.studies.models import Study
from tests import case_support as cs
from tests import report_support as rs


@pytest.fixture
def people(create_user):
    class People:
        physician = create_user("physician", name="Dr Pat Referrer")
        other_patient = create_user("patient")
        admin = create_user("admin")
        reader = create_user("radiologist", name="Dr Ada Reader")
        overreader = create_user("radiologist", name="Dr Bo Second")
        offered = create_user("radiologist")

    return People


@pytest.fixture
def reported(app, people):
    """A physician's case for Jane Roe (born 1961-04-02), read and signed."""
    case = rs.accepted_case(
        app, people.physician, people.reader, subject_birth_date=date(1961, 4, 2)
    )
    rs.sign(app, case, people.reader)
    return case


def _text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def _pdf(app, case) -> tuple[bytes, list]:
    with app.app_context():
        stored = db.session.get(Case, case.id)
        reports = signed_reports(stored)
        facts = [(r.author.name, signed_at_text(r.signed_at), r.content_hash) for r in reports]
        return render_case_pdf(stored), facts, content.document_hash(reports)


def test_the_pdf_holds_each_signed_part_with_signer_time_and_hash(app, people, reported):
    rs.sign(app, reported, people.reader, Kind.ADDENDUM)
    case = rs.assign_overread(app, reported, people.physician, people.admin, people.overreader)
    rs.sign(app, case, people.overreader, Kind.OVERREAD)
    pdf, facts, whole = _pdf(app, case)
    text = _text(pdf)

    assert pdf.startswith(b"%PDF-") and case.number in text and "Urgent" in text
    assert "Jane Roe" in text and "1961-04-02" in text
    assert "No pulmonary embolism." in text and "Incidental 4 mm nodule" in text
    assert "Addendum 1" in text and "Overread 1" in text and "Minor discrepancy" in text
    assert len(facts) == 3
    for name, signed_at, content_hash in facts:
        assert name in text and signed_at in text and content_hash in text
    assert text.rstrip().endswith(whole)


def test_the_same_content_gives_the_same_bytes(app, reported):
    first, _, _ = _pdf(app, reported)
    second, _, _ = _pdf(app, reported)
    assert first == second


def test_a_deidentified_case_pdf_names_no_patient(app, people):
    with app.app_context():
        physician = db.session.merge(people.physician)
        study_id = cs.ingest_sample(physician)
        number = case_operations.new_case_number()
        copies = make_reading_copies([db.session.get(Study, study_id)], physician, number)
        request = case_operations.CaseRequest(
            "Question?",
            Urgency.ROUTINE,
            [study_id],
            deidentify=True,
            subject_name="Jane Roe",
            subject_birth_date=date(1961, 4, 2),
            reading_copies=copies,
        )
        case = case_operations.submit_case(physician, request, number=number)
        db.session.commit()
        original_name = str(db.session.get(Study, study_id).patient.name)
        case_id = case.id
    case = cs.accept(app, cs.offer(app, cs.load(app, case_id), people.reader), people.reader)
    rs.sign(app, case, people.reader)

    text = _text(_pdf(app, case)[0])
    assert case.number in text and "Dr Ada Reader" in text
    for identifier in ("Jane Roe", "Roe", "1961-04-02", original_name.split("^")[0]):
        assert identifier not in text


def test_the_requester_downloads_the_pdf_and_it_is_audited(app, client, auth, people, reported):
    auth.login(people.physician)
    response = client.get(f"/cases/{reported.number}/report.pdf")
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    disposition = response.headers["Content-Disposition"]
    assert disposition == f"attachment; filename=overread-{reported.number}.pdf"
    assert reported.number in _text(response.data)
    with app.app_context():
        (event,) = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "report.downloaded")
        ).all()
        report = signed_reports(db.session.get(Case, reported.id))[0]
        assert (event.actor_id, event.case_id) == (people.physician.id, reported.id)
        assert event.target == f"report:{report.id}" and "Jane Roe" not in event.details


@pytest.mark.parametrize(
    ("who", "status"),
    [("reader", 200), ("admin", 200), ("other_patient", 404), ("offered", 403)],
)
def test_who_may_download_the_pdf(app, client, auth, people, reported, who, status):
    with app.app_context():  # offered the overread: the offer shows no report yet
        case_operations.request_overread(reported.id, db.session.merge(people.physician))
        case_operations.offer_case(
            reported.id, [db.session.merge(people.offered)], db.session.merge(people.admin)
        )
        db.session.commit()
    auth.login(getattr(people, who))
    assert client.get(f"/cases/{reported.number}/report.pdf").status_code == status


def test_no_pdf_before_a_report_is_signed(app, client, auth, people):
    case = rs.accepted_case(app, people.physician, people.reader)
    auth.login(people.physician)
    assert client.get(f"/cases/{case.number}/report.pdf").status_code == 404
    with app.app_context(), pytest.raises(ValueError, match="no signed report"):
        render_case_pdf(db.session.get(Case, case.id))
