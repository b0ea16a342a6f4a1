"""A radiologist writes and signs a report on a phone-sized Chromium; the draft autosaves."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from portal.extensions import db
from portal.reports.models import Report
from tests import report_support as rs
from tests.browser.test_accounts_on_phone import fits_screen, sign_in
from tests.conftest import PASSWORD, totp_now

pytestmark = pytest.mark.browser


def _draft(app, case) -> Report | None:
    with app.app_context():
        report = db.session.scalars(select(Report).where(Report.case_id == case.id)).first()
        db.session.expunge_all()
        return report


def test_the_report_autosaves_retries_offline_and_signs(phone, app, create_user):
    patient = create_user("patient")
    reader = create_user("radiologist", name="Dr Ada Reader")
    case = rs.accepted_case(app, patient, reader)
    sign_in(phone, reader.email)
    phone.get_by_label("6-digit code").fill(totp_now(reader))
    phone.get_by_role("button", name="Verify").click()
    phone.goto(f"/cases/{case.number}/report")

    status = phone.locator("#draft-status")
    phone.get_by_label("Findings").fill("Clear lungs.")
    expect(status).to_contain_text("Draft saved", timeout=6000)
    assert _draft(app, case).findings == "Clear lungs."

    phone.context.set_offline(True)
    phone.get_by_label("Impression").fill("No pulmonary embolism.")
    phone.get_by_label("Findings").focus()  # leaving a field saves at once
    expect(status).to_have_text("Not saved — retrying")
    phone.context.set_offline(False)
    expect(status).to_contain_text("Draft saved", timeout=10_000)
    assert _draft(app, case).impression == "No pulmonary embolism."

    phone.reload()
    expect(phone.get_by_label("Impression")).to_have_value("No pulmonary embolism.")
    phone.get_by_label("Agree", exact=True).check()
    phone.get_by_label("Password").fill(PASSWORD)
    assert fits_screen(phone)
    phone.shot("report-form")
    phone.get_by_role("button", name="Sign report").click()

    expect(phone.get_by_text("The report is signed.")).to_be_visible()
    signed = _draft(app, case)
    assert signed.signed_with == "password" and signed.agreement == "agree"
    expect(phone.get_by_text(signed.content_hash)).to_be_visible()
    assert fits_screen(phone)
    phone.shot("report-signed")
