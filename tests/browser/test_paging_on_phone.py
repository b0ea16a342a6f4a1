"""A radiologist sets up paging on a phone, then opens a viewing link with the PIN."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from portal.auth.models import User
from portal.cases.models import Case
from portal.extensions import db
from portal.links.operations import issue_link
from portal.notifications.channels import Delivery, register_channel
from tests import case_support as cs
from tests.browser.test_accounts_on_phone import fits_screen, sign_in
from tests.conftest import PASSWORD, totp_now
from tests.paging_support import drain

pytestmark = pytest.mark.browser
PIN = "582046"


class RecordingSms:
    """The sms channel of this test: keeps what would have been texted."""

    name = "sms"

    def __init__(self) -> None:
        self.texts: list[str] = []

    def send(self, notification) -> Delivery:
        self.texts.append(notification.body)
        return Delivery(via=self.name, provider_status="recorded")


def test_paging_profile_then_a_viewing_link_on_a_phone(phone, app, create_user):
    sms = RecordingSms()
    register_channel(app, "sms", lambda config: sms)
    physician = create_user("physician")
    reader = create_user("radiologist", name="Dr Ada Reader")
    case = cs.accept(app, cs.offer(app, cs.submit(app, physician), reader), reader)

    sign_in(phone, reader.email)
    phone.get_by_label("6-digit code").fill(totp_now(reader))
    phone.get_by_role("button", name="Verify").click()
    phone.get_by_role("link", name="Paging").first.click()
    expect(phone.get_by_role("heading", name="Preferences")).to_be_visible()
    phone.get_by_label("Chest").check()
    phone.get_by_label("Time zone").fill("Europe/London")
    phone.get_by_label("Slack member ID (optional)").fill("U012AB3CD")
    phone.get_by_role("button", name="Save preferences").click()
    expect(phone.get_by_text("U012AB3CD").first).to_be_visible()

    phone.get_by_role("textbox", name="Mobile number").fill("+44 7700 900123")
    phone.get_by_role("button", name="Send code").click()
    drain(app)  # the dispatcher makes the code as it sends the SMS
    code = re.search(r"\b(\d{6})\b", sms.texts[-1]).group(1)
    phone.get_by_label("Code from the text message").fill(code)
    phone.get_by_role("button", name="Confirm").click()
    expect(phone.get_by_text("verified", exact=False).first).to_be_visible()

    phone.get_by_label("New viewer PIN").fill(PIN)
    phone.get_by_label("Repeat the PIN").fill(PIN)
    phone.get_by_label("Password").fill(PASSWORD)
    phone.get_by_role("button", name="Set PIN").click()
    expect(phone.get_by_text("Your PIN is set")).to_be_visible()
    assert fits_screen(phone)
    phone.shot("paging-profile")

    phone.goto("/oncall")
    expect(phone.get_by_role("heading", name=re.compile("on call", re.I)).first).to_be_visible()
    assert fits_screen(phone)

    with app.app_context():
        user, held = db.session.get(User, reader.id), db.session.get(Case, case.id)
        code = issue_link(user, held, "sms")
        db.session.commit()
    phone.context.clear_cookies()  # the link is opened outside any sign-in
    phone.goto(f"/l/{code}")
    expect(phone.get_by_text(f"Case {case.number}").first).to_be_visible()
    assert "Jane Roe" not in phone.content()  # no patient details before the PIN
    phone.shot("link-pin")
    phone.locator("input[name=factor]").fill("000000")
    phone.get_by_role("button", name="Open the case").click()
    expect(phone.get_by_text("tries left", exact=False)).to_be_visible()
    phone.locator("input[name=factor]").fill(PIN)
    phone.get_by_role("button", name="Open the case").click()
    expect(phone).to_have_url(re.compile(rf"/viewer/{case.number}$"))
    expect(phone.get_by_text("Is there a pulmonary embolism?").first).to_be_visible()
    assert fits_screen(phone)
    phone.shot("viewer-landing")

    phone.goto(f"/l/{code}")  # single use
    expect(phone.get_by_text("already been used", exact=False)).to_be_visible()
    assert fits_screen(phone)
