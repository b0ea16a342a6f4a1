"""The request form, the case page and the queue on a phone-sized Chromium."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from portal.extensions import db
from tests import case_support as cs
from tests.browser.test_accounts_on_phone import fits_screen, sign_in
from tests.conftest import totp_now

pytestmark = pytest.mark.browser


def test_a_patient_fixes_the_request_form_and_sends_it(phone, app, create_user):
    patient = create_user("patient", name="Jane Roe")
    with app.app_context():
        cs.ingest_sample(db.session.merge(patient))
    sign_in(phone, patient.email)
    phone.get_by_role("link", name="Cases").click()
    phone.get_by_role("link", name="Ask for a second opinion").click()
    phone.get_by_label("Relevant history").fill("Smoker for 20 years.")
    phone.get_by_label("STAT: report within 1 hour").check()
    phone.get_by_role("button", name="Send request").click()

    question = phone.locator("#clinical_question-errors")
    expect(question).to_have_text("Ask the question you want the radiologist to answer.")
    expect(phone.locator("#studies-errors")).to_have_text("Choose at least one study.")
    expect(phone.locator("#consent-errors")).to_be_visible()
    expect(phone.get_by_label("Relevant history")).to_have_value("Smoker for 20 years.")
    expect(phone.get_by_label("STAT: report within 1 hour")).to_be_checked()
    assert fits_screen(phone)
    phone.shot("request-errors")

    phone.get_by_label("Your question for the radiologist").fill("Is the nodule larger?")
    phone.get_by_label("e+1 (CT, 2004-01-19)").check()
    phone.get_by_label("I agree that Overread shares").check()
    phone.get_by_role("button", name="Send request").click()
    expect(phone.get_by_text("Your request is sent")).to_be_visible()
    expect(phone.get_by_text("Request submitted")).to_be_visible()
    expect(phone.locator(".sla-on-time").first).to_have_text("on time")
    assert fits_screen(phone)
    phone.shot("case-page")


def test_an_admin_watches_the_queue_and_offers_a_case(phone, app, create_user):
    patient = create_user("patient")
    admin = create_user("admin")
    create_user("radiologist", name="Dr Rad One")
    case = cs.submit(app, patient)
    sign_in(phone, admin.email)
    phone.get_by_label("6-digit code").fill(totp_now(admin))
    phone.get_by_role("button", name="Verify").click()
    phone.goto("/cases/queue")
    phone.get_by_label("Urgency").select_option("urgent")
    phone.get_by_role("button", name="Filter").click()
    expect(phone.get_by_label("Urgency")).to_have_value("urgent")
    assert fits_screen(phone)
    phone.shot("queue")

    phone.get_by_role("link", name=f"Case {case.number}").click()
    phone.get_by_label("Dr Rad One").check()
    phone.get_by_role("button", name="Offer", exact=True).click()
    expect(phone.get_by_text(f"Case {case.number} is offered.")).to_be_visible()
    assert fits_screen(phone)
    phone.shot("case-offered")
