"""The requester's whole journey on a phone: request -> status -> signed report -> PDF.

The radiologist's side (offer, accept, sign) runs through the real operations
in between; the report writing itself is walked in ``test_report_on_phone``.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from playwright.sync_api import expect
from pypdf import PdfReader
from sqlalchemy import select

from portal.cases.models import Case
from portal.extensions import db
from tests import case_support as cs
from tests import report_support as rs
from tests.browser.test_accounts_on_phone import fits_screen, sign_in

pytestmark = pytest.mark.browser


def _latest_case(app) -> Case:
    with app.app_context():
        case = db.session.scalars(select(Case).order_by(Case.id.desc())).first()
        db.session.expunge(case)
        return case


def _radiologist_reads(app, case: Case, radiologist) -> None:
    case = cs.accept(app, cs.offer(app, case, radiologist), radiologist)
    rs.sign(app, case, radiologist)


def _follow_to_the_pdf(phone, case: Case, name: str, prefix: str) -> None:
    phone.goto(f"/cases/{case.number}")
    expect(phone.get_by_text(f"Accepted by {name}")).to_be_visible()
    expect(phone.get_by_text("No pulmonary embolism.").first).to_be_visible()
    assert fits_screen(phone)
    phone.shot(f"{prefix}-3-reported")
    with phone.expect_download() as download:
        phone.get_by_role("link", name="Download PDF").first.click()
    pdf = PdfReader(io.BytesIO(Path(download.value.path()).read_bytes()))
    text = "".join(page.extract_text() for page in pdf.pages)
    assert case.number in text and name in text and "SHA-256" in text


def test_a_patient_asks_follows_and_downloads_the_report(phone, app, create_user):
    patient = create_user("patient", name="Jane Roe")
    radiologist = create_user("radiologist", name="Dr Ada Reader")
    with app.app_context():
        cs.ingest_sample(db.session.merge(patient))
    sign_in(phone, patient.email)
    phone.get_by_role("link", name="Cases").click()
    phone.get_by_role("link", name="Ask for a second opinion").click()
    phone.get_by_label("Your question for the radiologist").fill("Is there a pulmonary embolism?")
    phone.get_by_label("Relevant history").fill("Short of breath since Monday.")
    phone.get_by_label("Urgent: report within 4 hours").check()
    phone.get_by_label("e+1 (CT, 2004-01-19)").check()
    phone.get_by_label("I agree that Overread shares").check()
    phone.shot("patient-1-request")
    phone.get_by_role("button", name="Send request").click()
    expect(phone.get_by_text("Your request is sent")).to_be_visible()
    phone.shot("patient-2-submitted")

    case = _latest_case(app)
    _radiologist_reads(app, case, radiologist)
    _follow_to_the_pdf(phone, case, "Dr Ada Reader", "patient")
    phone.get_by_role("link", name="Cases").click()
    expect(phone.get_by_text(case.number).first).to_be_visible()
    assert fits_screen(phone)


def test_a_physician_asks_for_a_patient_and_gets_the_report(phone, app, create_user):
    physician = create_user("physician", name="Dr Phil Referrer")
    radiologist = create_user("radiologist", name="Dr Ada Reader")
    with app.app_context():
        cs.ingest_sample(db.session.merge(physician))
    sign_in(phone, physician.email)
    phone.get_by_role("link", name="Cases").click()
    phone.get_by_role("link", name="Ask for a second opinion").click()
    phone.get_by_label("Patient's full name").fill("John Smith")
    phone.get_by_label("Patient's date of birth").fill("1961-04-02")
    phone.get_by_label("Your question for the radiologist").fill("Any sign of PE?")
    phone.get_by_label("STAT: report within 1 hour").check()
    phone.get_by_label("e+1 (CT, 2004-01-19)").check()
    phone.shot("physician-1-request")
    phone.get_by_role("button", name="Send request").click()
    expect(phone.get_by_text("Your request is sent")).to_be_visible()
    expect(phone.get_by_text("John Smith").first).to_be_visible()
    phone.shot("physician-2-submitted")

    case = _latest_case(app)
    assert case.referring_physician_id == physician.id
    _radiologist_reads(app, case, radiologist)
    _follow_to_the_pdf(phone, case, "Dr Ada Reader", "physician")
