"""A new patient and a radiologist use the portal on a phone-sized Chromium."""

from __future__ import annotations

import re
from datetime import timedelta

import pyotp
import pytest
from playwright.sync_api import expect

from portal import clock
from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser


def fits_screen(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def sign_in(page, email: str, password: str = PASSWORD) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_new_patient_registers_then_signs_in_again(phone):
    phone.goto("/")
    phone.get_by_role("link", name="Create an account").click()
    phone.get_by_label("Full name").fill("Paula Patient")
    phone.get_by_label("Email").fill("paula@example.org")
    phone.get_by_label("Password", exact=True).fill("a long enough password")
    phone.get_by_label("Repeat password").fill("a long enough password")
    assert fits_screen(phone)
    phone.shot("register-form")
    phone.get_by_role("button", name="Create account").click()
    expect(phone.get_by_role("heading", name="Hello, Paula Patient")).to_be_visible()
    phone.shot("registered")

    phone.get_by_role("button", name="Sign out").click()
    expect(phone.get_by_text("You are signed out.")).to_be_visible()
    sign_in(phone, "paula@example.org", "a long enough password")
    expect(phone.get_by_text("signed in as a patient")).to_be_visible()
    assert fits_screen(phone)
    assert phone.shot("signed-in").stat().st_size > 0


def test_registration_errors_show_next_to_fields_and_keep_input(phone):
    phone.goto("/register")
    phone.get_by_label("Full name").fill("Paula Patient")
    phone.get_by_label("Email").fill("paula@example.org")
    phone.get_by_label("Password", exact=True).fill("short")
    phone.get_by_label("Repeat password").fill("different")
    phone.get_by_role("button", name="Create account").click()
    expect(phone.locator("#password-errors")).to_contain_text("10")
    expect(phone.locator("#confirm-errors")).to_contain_text("differ")
    expect(phone.get_by_label("Email")).to_have_value("paula@example.org")
    assert fits_screen(phone)
    phone.shot("register-errors")


def test_radiologist_enrols_totp_from_qr_page_and_signs_in_with_it(
    phone, create_user, frozen_clock
):
    user = create_user("radiologist", totp=False)
    sign_in(phone, user.email)
    expect(phone.get_by_role("heading", name="Set up two-step sign-in")).to_be_visible()
    qr = phone.get_by_alt_text("QR code for your authenticator app")
    expect(qr).to_be_visible()
    assert qr.evaluate("img => img.complete && img.naturalWidth > 100"), "QR code did not render"
    phone.shot("enrol-totp")
    secret = phone.locator("#totp-secret").inner_text().strip()
    code = pyotp.TOTP(secret)
    phone.get_by_label("6-digit code").fill(code.at(clock.now()))
    phone.get_by_role("button", name="Turn on").click()
    expect(phone.get_by_text("signed in as a radiologist")).to_be_visible()

    phone.get_by_role("button", name="Sign out").click()
    sign_in(phone, user.email)
    expect(phone.get_by_role("heading", name="Enter your code")).to_be_visible()
    frozen_clock.advance(timedelta(seconds=30))  # the enrolment code's step is spent
    phone.get_by_label("6-digit code").fill(code.at(clock.now()))
    phone.get_by_role("button", name="Verify").click()
    expect(phone.get_by_text("signed in as a radiologist")).to_be_visible()
    assert fits_screen(phone)
    phone.shot("radiologist-signed-in")


def test_admin_invites_a_physician_who_joins_from_the_outbox_link(
    phone, browser, live_url, create_user
):
    admin = create_user("admin")
    sign_in(phone, admin.email)
    phone.get_by_label("6-digit code").fill(pyotp.TOTP(admin.totp_secret).now())
    phone.get_by_role("button", name="Verify").click()
    phone.get_by_role("link", name="Invites").click()
    phone.get_by_label("Email").fill("dr.new@example.org")
    phone.get_by_label("Role").select_option("physician")
    phone.get_by_role("button", name="Send invite").click()
    expect(phone.get_by_text("Invite sent to dr.new@example.org")).to_be_visible()

    phone.get_by_role("link", name="Outbox").click()
    body = phone.locator(".message .body").first.inner_text()
    link = re.search(r"https?://\S+/invite/\S+", body).group(0)
    phone.shot("outbox")

    invitee = browser.new_context(
        viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True
    ).new_page()
    invitee.goto(link)
    invitee.get_by_label("Full name").fill("Dr New")
    invitee.get_by_label("New password", exact=True).fill("another long password")
    invitee.get_by_label("Repeat new password").fill("another long password")
    invitee.get_by_role("button", name="Create my account").click()
    expect(invitee.get_by_text("Your account is ready")).to_be_visible()
    invitee.goto(link)
    expect(invitee.get_by_role("heading", name="Link no longer valid")).to_be_visible()
    invitee.context.close()


PAGES_FOR_ROLE = {
    None: ["/", "/login", "/register", "/forgot", "/no-such-page"],
    "patient": ["/", "/account/", "/admin/users"],
    "admin": ["/admin/users", "/admin/invites", "/admin/audit", "/admin/outbox", "/account/"],
}


@pytest.mark.parametrize("role", list(PAGES_FOR_ROLE))
def test_every_page_fits_a_small_phone_and_labels_every_field(
    browser, live_url, create_user, role, tmp_path
):
    page = browser.new_context(
        base_url=live_url, viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True
    ).new_page()
    if role:
        user = create_user(role)
        sign_in(page, user.email)
        if user.totp_enrolled:
            page.get_by_label("6-digit code").fill(pyotp.TOTP(user.totp_secret).now())
            page.get_by_role("button", name="Verify").click()
    for path in PAGES_FOR_ROLE[role]:
        page.goto(path)
        assert fits_screen(page), f"{path} scrolls sideways at 360px"
        unlabelled = page.evaluate("""() => [...document.querySelectorAll(
            'input:not([type=hidden]), select, textarea')].filter(
            el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
        ).map(el => el.name)""")
        assert unlabelled == [], f"{path} has fields without labels: {unlabelled}"
        page.screenshot(path=str(tmp_path / f"{role}-{path.strip('/').replace('/', '_')}.png"))
    page.context.close()
