"""Viewer paint benchmark: time to the first image in Chromium on a throttled phone link.

Builds a throw-away Overread (SQLite and a storage folder in a temporary directory), ingests
a synthetic CT series (512x512, 16-bit) for a physician's case that a radiologist accepts,
serves it on loopback, and drives Debian's Chromium at a phone viewport (390x844, touch)
with the network throttled through the DevTools protocol (``--mbps`` down, ``--latency`` ms).
Each run has a fresh browser context (cold cache) and a freshly redeemed viewing link.

Figures (median over ``--runs``):

- landing: opening ``/viewer/<number>`` until the first series thumbnail is painted;
- open series: tapping that thumbnail until its first image is painted;
- deep link: opening ``/viewer/<number>#s=0`` (a reload, or coming back) until the first image;
- whole stack: the deep link until every image of the series has arrived;
- the viewer page's own JS and CSS, in bytes as served (and gzipped, for reference).

    .venv/bin/python scripts/bench_viewer_paint.py [--runs 5] [--slices 40] [--mbps 10]

Targets: first image under 1.5 s; viewer JS+CSS under 150 KB. Only loopback is used.
"""

from __future__ import annotations

import argparse
import gzip
import logging
import re
import statistics
import sys
import tempfile
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.harness import live_server  # noqa: E402
from tests.synthetic import write_chest_series  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 3,
    "is_mobile": True,
    "has_touch": True,
}
VIEWER_STATIC = ROOT / "portal" / "static" / "viewer"
PIN = "482915"
PASSWORD = "bench password 123"  # noqa: S105 - a throw-away account on loopback
CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
FIRST_IMAGE = "() => performance.getEntriesByName('overread:first-image').length > 0"
FIRST_IMAGE_AT = "() => performance.getEntriesByName('overread:first-image')[0].startTime"


# --- data ------------------------------------------------------------------------------
def make_ct(folder: Path, slices: int, size: int = 512) -> list[Path]:
    """Write a chest-like CT phantom with noise (see :mod:`tests.synthetic`)."""
    return write_chest_series(
        folder,
        slices,
        size,
        noise=15,
        PatientName="BENCH^VIEWER",
        PatientID="BENCH-2",
        SeriesDescription="Chest 1 mm",
        SeriesNumber=1,
        WindowCenter=40,
        WindowWidth=400,
    )


# --- the portal ------------------------------------------------------------------------
def build_portal(work: Path, slices: int):
    """Return (app, radiologist id, case id, case number) with the case accepted."""
    from flask_migrate import upgrade

    from portal import create_app
    from portal.auth.operations import create_user
    from portal.cases import operations as cases
    from portal.cases.states import Urgency
    from portal.extensions import db
    from portal.links.pin import set_pin
    from portal.oncall.models import PagingProfile
    from portal.studies.ingest import ingest_files

    app = create_app(
        {
            "SECRET_KEY": "bench-viewer-secret-key-0123456789abcdef0123456789",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{work / 'overread.db'}",
            "STORAGE_URL": (work / "storage").as_uri(),
            "SPOOL_DIR": str(work / "spool"),
            "RENDER_CACHE_DIR": str(work / "render-cache"),
            "BASE_URL": "http://127.0.0.1",
            "LOGIN_RATE_LIMIT": "1000 per minute",
        }
    )
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    with app.app_context():
        upgrade()
        physician = create_user("physician@example.org", "Bench Physician", "physician", PASSWORD)
        reader = create_user("reader@example.org", "Bench Reader", "radiologist", PASSWORD)
        db.session.flush()
        profile = PagingProfile(user_id=reader.id, subspecialties="general", page_via="both")
        set_pin(profile, PIN)
        db.session.add(profile)
        db.session.commit()
        results = ingest_files(make_ct(work / "ct", slices), physician, via="upload")
        study_id = _study_id(results[0].study_instance_uid)
        request = cases.CaseRequest("Bench question", Urgency.STAT, [study_id], subject_name="X")
        case = cases.submit_case(physician, request)
        db.session.commit()
        cases.offer_case(case.id, [reader], None)
        cases.accept_case(case.id, reader)
        db.session.commit()
        return app, reader.id, case.id, case.number


def _study_id(uid: str) -> int:
    from sqlalchemy import select

    from portal.extensions import db
    from portal.studies.models import Study

    return db.session.scalar(select(Study.id).where(Study.study_instance_uid == uid))


def viewer_cookie(app, base: str, reader_id: int, case_id: int) -> dict:
    """Issue a link and redeem it over HTTP; return the viewer-session cookie for Playwright."""
    from portal.auth.models import User
    from portal.cases.models import Case
    from portal.extensions import db
    from portal.links.operations import issue_link
    from portal.links.sessions import VIEWER_COOKIE

    with app.app_context():
        code = issue_link(db.session.get(User, reader_id), db.session.get(Case, case_id), "web")
        db.session.commit()
    with requests.Session() as http:
        token = CSRF.search(http.get(f"{base}/l/{code}", timeout=30).text).group(1)
        answer = http.post(
            f"{base}/l/{code}",
            data={"factor": PIN, "csrf_token": token},
            allow_redirects=False,
            timeout=30,
        )
        assert answer.status_code == 303, answer.status_code
        value = http.cookies.get(VIEWER_COOKIE)
    return {"name": VIEWER_COOKIE, "value": value, "url": f"{base}/viewer"}


# --- the browser -----------------------------------------------------------------------
def throttled_page(browser, base: str, cookie: dict, mbps: float, latency_ms: float):
    context = browser.new_context(base_url=base, **PHONE)
    context.add_cookies([cookie])
    page = context.new_page()
    page.set_default_timeout(60_000)
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {
            "offline": False,
            "latency": latency_ms,
            "downloadThroughput": mbps * 1_000_000 / 8,
            "uploadThroughput": mbps * 1_000_000 / 8,
        },
    )
    return context, page


def measure_landing(page, number: str) -> tuple[float, float, int]:
    """(ms to the first thumbnail, ms from a tap to the first image, viewer static bytes)."""
    page.goto(f"/viewer/{number}")
    page.wait_for_function("() => document.querySelector('.vw-series img')?.naturalWidth > 0")
    thumbnail = page.evaluate(
        "() => { const img = document.querySelector('.vw-series img');"
        " const entry = performance.getEntriesByName(img.src)[0];"
        " return entry ? entry.responseEnd : performance.now(); }"
    )
    statics = page.evaluate(
        "() => performance.getEntriesByType('resource')"
        ".filter(e => e.name.includes('/static/viewer/'))"
        ".reduce((sum, e) => sum + e.encodedBodySize, 0)"
    )
    tapped = page.evaluate("() => performance.now()")
    page.locator(".vw-series").first.tap()
    page.wait_for_function(FIRST_IMAGE)
    return thumbnail, page.evaluate(FIRST_IMAGE_AT) - tapped, statics


def measure_deep_link(page, number: str, slices: int) -> tuple[float, float]:
    """(ms to the first image, ms until every image of the series has arrived)."""
    page.goto(f"/viewer/{number}#s=0")
    page.wait_for_function(FIRST_IMAGE)
    first = page.evaluate(FIRST_IMAGE_AT)
    page.wait_for_function(
        "n => new Set(performance.getEntriesByType('resource')"
        ".filter(e => e.name.includes('/frames/') && !e.name.includes('size=256'))"
        ".map(e => e.name)).size >= n",
        arg=slices,
    )
    whole = page.evaluate(
        "() => Math.max(...performance.getEntriesByType('resource')"
        ".filter(e => e.name.includes('/frames/')).map(e => e.responseEnd))"
    )
    return first, whole


def static_sizes() -> tuple[int, int]:
    files = sorted(VIEWER_STATIC.glob("*.js")) + sorted(VIEWER_STATIC.glob("*.css"))
    raw = sum(path.stat().st_size for path in files)
    zipped = sum(len(gzip.compress(path.read_bytes(), 9)) for path in files)
    return raw, zipped


def run(args) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    figures: dict[str, list[float]] = {"landing": [], "tap": [], "deep": [], "stack": []}
    with tempfile.TemporaryDirectory(prefix="overread-bench-viewer-") as folder:
        app, reader_id, case_id, number = build_portal(Path(folder), args.slices)
        with live_server(app) as base, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for _ in range(args.runs):
                for measure in ("landing", "deep"):
                    cookie = viewer_cookie(app, base, reader_id, case_id)
                    context, page = throttled_page(browser, base, cookie, args.mbps, args.latency)
                    if measure == "landing":
                        thumbnail, tap, served = measure_landing(page, number)
                        figures["landing"].append(thumbnail)
                        figures["tap"].append(tap)
                        figures.setdefault("served", []).append(served)
                    else:
                        first, whole = measure_deep_link(page, number, args.slices)
                        figures["deep"].append(first)
                        figures["stack"].append(whole)
                    context.close()
            browser.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--slices", type=int, default=40)
    parser.add_argument("--mbps", type=float, default=10.0)
    parser.add_argument("--latency", type=float, default=100.0, help="round trip added, ms")
    args = parser.parse_args()
    figures = run(args)
    raw, zipped = static_sizes()
    median = {key: statistics.median(values) for key, values in figures.items()}
    print(
        f"Viewer on a throttled link ({args.mbps:g} Mbit/s, {args.latency:g} ms latency), "
        f"phone 390x844, cold cache, {args.slices} CT slices 512x512, median of {args.runs}:"
    )
    print(f"  landing -> first thumbnail painted   {median['landing']:7.0f} ms")
    print(f"  tap a series -> first image painted  {median['tap']:7.0f} ms")
    print(f"  deep link -> first image painted     {median['deep']:7.0f} ms  (target < 1500)")
    print(f"  deep link -> whole stack fetched     {median['stack']:7.0f} ms")
    print(
        f"  viewer JS+CSS: {raw / 1024:.1f} KB as served ({median['served'] / 1024:.1f} KB "
        f"transferred), {zipped / 1024:.1f} KB gzipped  (target < 150 KB)"
    )


if __name__ == "__main__":
    main()
