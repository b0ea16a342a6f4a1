"""A radiologist reads a CT stack and a cine loop in the mobile viewer on a phone-sized Chromium.

Touch input goes through the DevTools protocol (``Input.dispatchTouchEvent``), so swipes and
pinches reach the page as real touch pointer events, as on a phone.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from portal.auth.models import User
from portal.cases import operations as case_operations
from portal.cases.models import Case
from portal.cases.states import Urgency
from portal.extensions import db
from portal.links.operations import issue_link
from portal.studies.ingest import ingest_files
from portal.studies.models import Study
from tests import case_support as cs
from tests.browser.test_accounts_on_phone import fits_screen, sign_in
from tests.conftest import totp_now
from tests.paging_support import PIN, make_profile
from tests.synthetic import write_chest_series

pytestmark = pytest.mark.browser

SLICES = 20
SIZE = 128
SPACING_MM = 0.7
PATIENT = "Jane Roe"


# --- a synthetic CT study -------------------------------------------------------------------
def write_ct_series(folder: Path) -> list[Path]:
    """A small chest-like CT series, from the head down (see :mod:`tests.synthetic`)."""
    return write_chest_series(
        folder,
        SLICES,
        SIZE,
        PatientName="ROE^JANE",
        PatientID="VIEWER-1",
        StudyDescription="CT chest",
        SeriesDescription="Chest 1 mm",
        SeriesNumber=2,
        WindowCenter=40,
        WindowWidth=400,
        PixelSpacing=[SPACING_MM, SPACING_MM],
    )


def ct_case(app, requester: User, radiologist: User, folder: Path) -> Case:
    """Ingest the synthetic CT for ``requester``, submit a case, ``radiologist`` accepts it."""
    with app.app_context():
        owner = db.session.merge(requester)
        results = ingest_files(write_ct_series(folder), owner, via="upload")
        uid = results[0].study_instance_uid
        study_id = db.session.scalar(select(Study.id).where(Study.study_instance_uid == uid))
        case = case_operations.submit_case(
            owner,
            case_operations.CaseRequest(
                clinical_question="Rib fracture?",
                urgency=Urgency.STAT,
                study_ids=[study_id],
                history="Fell from a ladder.",
                subject_name=PATIENT,
            ),
        )
        db.session.commit()
        case_id = case.id
    case = cs.offer(app, cs.load(app, case_id), radiologist)
    return cs.accept(app, case, radiologist)


def issue(app, radiologist: User, case: Case) -> str:
    with app.app_context():
        user, held = db.session.get(User, radiologist.id), db.session.get(Case, case.id)
        code = issue_link(user, held, "sms")
        db.session.commit()
    return code


# --- touch, through the DevTools protocol ------------------------------------------------------
class Touch:
    def __init__(self, page) -> None:
        self.page = page
        self.cdp = page.context.new_cdp_session(page)

    def _send(self, kind: str, points: list[tuple[float, float]]) -> None:
        touch_points = [{"x": x, "y": y, "id": i} for i, (x, y) in enumerate(points)]
        self.cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": touch_points})

    def drag(self, starts: list[tuple[float, float]], ends: list[tuple[float, float]], steps=10):
        """Put fingers down at ``starts``, move them in ``steps`` to ``ends``, lift them."""
        self._send("touchStart", starts)
        for step in range(1, steps + 1):
            t = step / steps
            pairs = zip(starts, ends, strict=True)
            self._send(
                "touchMove", [(a + (c - a) * t, b + (d - b) * t) for (a, b), (c, d) in pairs]
            )
        self._send("touchEnd", [])


def stage_box(page) -> dict:
    return page.locator(".vw-stage").bounding_box()


def painted(page) -> int:
    return page.evaluate("() => Number(document.querySelector('.vw-canvas').dataset.painted || 0)")


def wait_painted(page, more_than: int = 0) -> None:
    page.wait_for_function(
        "n => { const c = document.querySelector('.vw-canvas');"
        " return c.width > 0 && Number(c.dataset.painted || 0) > n"
        " && !document.querySelector('.vw-stage').classList.contains('vw-loading'); }",
        arg=more_than,
    )


STACK_FETCHED = """n => new Set(performance.getEntriesByType('resource')
    .filter(e => e.name.includes('/frames/') && !e.name.includes('size=256'))
    .map(e => e.name.split('?')[0])).size >= n"""


def watch_errors(page) -> list[str]:
    """Collect the page's script errors and console errors (a failed image load is one)."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    return errors


def zoom(page) -> float:
    return float(page.locator(".vw-canvas").get_attribute("data-zoom"))


# --- the read ---------------------------------------------------------------------------------
def test_a_radiologist_reads_a_ct_stack_from_a_link(phone, app, create_user, tmp_path):
    physician = create_user("physician")
    reader = create_user("radiologist", name="Dr Ada Reader")
    make_profile(app, reader)
    case = ct_case(app, physician, reader, tmp_path / "ct")
    errors = watch_errors(phone)
    phone.goto(f"/l/{issue(app, reader, case)}")
    phone.get_by_label("Viewer PIN or authenticator code").fill(PIN)
    phone.get_by_role("button", name="Open the case").click()
    expect(phone).to_have_url(re.compile(rf"/viewer/{case.number}$"))
    series = phone.get_by_role("button", name=re.compile(r"^Open Series 2 · CT"))
    expect(series).to_contain_text("20 images")
    phone.wait_for_function("() => document.querySelector('.vw-series img').naturalWidth > 0")
    assert fits_screen(phone)
    phone.shot("viewer-series-strip")

    series.click()
    wait_painted(phone)
    counter = phone.locator(".vw-count")
    expect(counter).to_have_text("1 / 20")
    phone.wait_for_function(STACK_FETCHED, arg=SLICES)  # the rest is prefetched at once
    phone.shot("viewer-first-image")

    touch, box = Touch(phone), stage_box(phone)
    step = min(24, max(6, box["height"] / SLICES))
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.75
    touch.drag([(x, y)], [(x, y - 10.5 * step)], steps=20)  # finger up: further down the stack
    expect(counter).to_have_text("11 / 20")
    wait_painted(phone)

    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    touch.drag([(cx - 40, cy), (cx + 40, cy)], [(cx - 120, cy - 10), (cx + 120, cy + 10)])
    assert zoom(phone) > 2
    phone.shot("viewer-pinched")
    phone.touchscreen.tap(cx, cy)
    phone.touchscreen.tap(cx, cy)
    expect(phone.locator(".vw-canvas")).to_have_attribute("data-zoom", "1.000")

    phone.get_by_role("button", name="W/L", exact=True).click()
    shown = painted(phone)
    with phone.expect_request(lambda r: "/frames/" in r.url and "wc=-600" in r.url) as request:
        phone.get_by_role("button", name=re.compile("^lung$", re.I)).click()
    assert "ww=1500" in request.value.url
    wait_painted(phone, shown)
    expect(phone.locator(".vw-br")).to_contain_text("W 1500  L -600")
    phone.shot("viewer-lung-window")

    phone.get_by_role("button", name="Measure", exact=True).click()
    touch.drag([(cx - 90, cy)], [(cx + 60, cy)])
    label = phone.locator(".vw-label")
    expect(label).to_have_text(re.compile(r"^\d+\.\d mm$"))
    css_px_per_pixel = min(box["width"], box["height"]) / SIZE
    expected = 150 / css_px_per_pixel * SPACING_MM
    assert abs(float(label.text_content().split()[0]) - expected) < 0.6
    phone.shot("viewer-measured")

    overlay = phone.locator(".vw-overlay")
    expect(overlay).to_contain_text("Chest 1 mm")
    phone.get_by_role("button", name="Info", exact=True).click()
    expect(overlay).to_be_hidden()
    phone.get_by_role("button", name="Scroll", exact=True).click()
    phone.touchscreen.tap(cx, cy)  # one tap on the image brings it back
    expect(overlay).to_be_visible()
    assert PATIENT.split()[0] not in phone.url and fits_screen(phone)
    assert phone.locator(".case-head").evaluate("head => head.inert")  # the page under the viewer

    with phone.context.expect_page() as opened:
        phone.get_by_role("link", name="Write the report (opens in a new tab)").click()
    report = opened.value
    report.get_by_label("Email").fill(reader.email)
    report.get_by_label("Password").fill("correct horse battery")
    report.get_by_role("button", name="Sign in").click()
    report.get_by_label("6-digit code").fill(totp_now(reader))
    report.get_by_role("button", name="Verify").click()
    expect(report.get_by_label("Findings")).to_be_visible()
    report.close()
    expect(counter).to_have_text("11 / 20")

    phone.reload()  # a phone may drop the tab: the place comes back from the fragment
    expect(counter).to_have_text("11 / 20")
    wait_painted(phone)
    expect(phone.locator(".vw-br")).to_contain_text("L -600")
    phone.go_back()  # the system back button closes the series
    expect(phone.locator(".vw")).to_be_hidden()
    expect(series).to_be_visible()
    assert not errors


def test_a_multiframe_series_plays_as_cine(phone, app, create_user):
    physician = create_user("physician")
    errors = watch_errors(phone)
    case = cs.submit(app, physician, sample="examples_ybr_color.dcm")
    sign_in(phone, physician.email)
    phone.goto(f"/viewer/{case.number}")
    phone.get_by_role("button", name=re.compile(r"^Open .*30 frames")).click()
    wait_painted(phone)
    counter = phone.locator(".vw-count")
    expect(counter).to_have_text("1 / 30")
    expect(phone.locator(".vw-fps")).to_have_text("30 fps")
    phone.get_by_role("button", name="Faster").click()
    expect(phone.locator(".vw-fps")).to_have_text("40 fps")
    phone.get_by_role("button", name="Play").click()
    expect(counter).not_to_have_text("1 / 30")
    phone.get_by_role("button", name="Pause").click()
    shown = counter.inner_text()
    phone.wait_for_timeout(300)
    assert counter.inner_text() == shown
    scrubber = phone.get_by_role("slider", name="Image in the stack").bounding_box()
    x = scrubber["x"] + scrubber["width"] / 2
    Touch(phone).drag([(x, scrubber["y"] + 30)], [(x, scrubber["y"] + scrubber["height"] - 2)])
    expect(counter).to_have_text("30 / 30")
    toast = phone.locator(".vw-toast")
    phone.get_by_role("button", name="W/L", exact=True).click()  # a colour image
    expect(toast).to_contain_text("does not apply to colour images")
    phone.get_by_role("button", name="Measure", exact=True).click()
    expect(toast).to_contain_text("distances cannot be measured")
    assert fits_screen(phone)
    phone.shot("viewer-cine")
    assert not errors
