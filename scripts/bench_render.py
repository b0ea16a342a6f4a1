"""Render benchmark: one 512x512 16-bit CT frame, cold and cached, beside Orthanc's preview.

Builds an app of its own (SQLite and storage in a temporary folder), ingests two
synthetic CT slices, submits a case on each and signs their requester in. The
``phantom`` slice looks like a CT (air, body, lungs, liver, spine; 15 HU of noise;
window 40/400); the ``noise`` slice is ``bench_ingest.py``'s (Gaussian noise of
300 HU, no window), the worst case for image encoders. For each it reports median
and p95 milliseconds for:

- the renderer alone (``render_frame``: decode, LUTs, resize, encode), per format;
- ``GET /viewer/<number>/frames/<uid>/1`` over HTTP (werkzeug on loopback, in a
  thread) with the render cache cleared before each request (cold) and warm
  (cached), as the client sees it and as the server spends it (WSGI middleware);
- Orthanc 1.10's ``GET /instances/{id}/preview`` on the same file (PNG, and JPEG
  with ``Accept: image/jpeg``), when Debian's ``orthanc`` is installed.

    .venv/bin/python scripts/bench_render.py [--runs 60] [--no-orthanc]

Targets (issue 6): cold faster than Orthanc's preview; cached under 5 ms.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import requests  # noqa: E402
from bench_ingest import ORTHANC, make_series, start_orthanc  # noqa: E402
from flask_migrate import upgrade  # noqa: E402
from pydicom.uid import generate_uid  # noqa: E402
from sqlalchemy import select  # noqa: E402

from portal import create_app  # noqa: E402
from portal.auth import operations as auth_operations  # noqa: E402
from portal.cases.operations import CaseRequest, submit_case  # noqa: E402
from portal.cases.states import Urgency  # noqa: E402
from portal.extensions import db  # noqa: E402
from portal.studies.ingest import ingest_file  # noqa: E402
from portal.studies.models import Study  # noqa: E402
from portal.viewer.images import render_cache  # noqa: E402
from portal.viewer.render import RenderOptions, render_frame  # noqa: E402
from tests.harness import live_server  # noqa: E402
from tests.synthetic import ct_slice  # noqa: E402

EMAIL, PASSWORD = "bench-physician@example.org", "bench password 123"


def percentiles(samples: list[float]) -> tuple[float, float]:
    """Median and p95 of ``samples`` (seconds) in milliseconds."""
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p95 * 1000


def report(label: str, samples: list[float]) -> dict:
    median, p95 = percentiles(samples)
    print(f"{label:<58} median {median:7.2f} ms   p95 {p95:7.2f} ms", flush=True)
    return {"what": label, "median_ms": round(median, 2), "p95_ms": round(p95, 2)}


def timed(runs: int, action: Callable[[], object], before: Callable[[], None] | None = None):
    samples = []
    for _ in range(runs):
        if before:
            before()
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return samples


# --- the app -----------------------------------------------------------------------------
class ServerTimer:
    """WSGI middleware noting how long the app took to produce each whole response."""

    def __init__(self, wsgi_app) -> None:
        self.wsgi_app, self.samples = wsgi_app, []

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        body = b"".join(self.wsgi_app(environ, start_response))
        self.samples.append(time.perf_counter() - started)
        return [body]


def make_phantom(path: Path, size: int = 512) -> Path:
    """Write a CT slice that looks like one: a body in air with lungs, liver and spine."""
    y, x = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    hu = np.full((size, size), -1000.0)
    hu[(x / 0.85) ** 2 + (y / 0.65) ** 2 < 1] = 40  # soft tissue
    for side in (-1, 1):
        hu[((x - side * 0.38) / 0.28) ** 2 + ((y + 0.05) / 0.42) ** 2 < 1] = -850  # lungs
    hu[((x + 0.3) / 0.3) ** 2 + ((y - 0.35) / 0.18) ** 2 < 1] = 60  # liver
    hu[x**2 + ((y - 0.45) / 0.9) ** 2 < 0.012] = 700  # spine
    hu += np.random.default_rng(7).normal(0, 15, hu.shape)
    ds = ct_slice(
        hu,
        study=generate_uid(),
        series=generate_uid(),
        number=1,
        PatientName="BENCH^PHANTOM",
        PatientID="BENCH-2",
        WindowCenter=40,
        WindowWidth=400,
    )
    ds.save_as(path, enforce_file_format=True)
    return path


def build_app(work: Path, ct_files: dict[str, Path]):
    """A migrated app holding a case on each file; return (app, {name: (number, uid)})."""
    app = create_app(
        {
            "SECRET_KEY": "bench-secret-key-that-is-long-enough-0123456789",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{work / 'overread.db'}",
            "STORAGE_URL": (work / "storage").as_uri(),
            "SPOOL_DIR": str(work / "spool"),
            "RENDER_CACHE_DIR": str(work / "render-cache"),
            "LOGIN_RATE_LIMIT": "10000 per minute",
        }
    )
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    with app.app_context():
        upgrade()
        user = auth_operations.create_user(EMAIL, "Bench Physician", "physician", PASSWORD)
        db.session.commit()
        cases = {}
        for name, ct_file in ct_files.items():
            result = ingest_file(ct_file, user)
            study_id = db.session.scalar(
                select(Study.id).where(Study.study_instance_uid == result.study_instance_uid)
            )
            request = CaseRequest("Benchmark", Urgency.ROUTINE, [study_id], subject_name="Bench")
            cases[name] = (submit_case(user, request).number, result.sop_instance_uid)
            db.session.commit()
        return app, cases


def sign_in(base: str) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{base}/login", timeout=30).text
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    answer = session.post(
        f"{base}/login",
        data={"email": EMAIL, "password": PASSWORD, "csrf_token": token},
        timeout=30,
        allow_redirects=False,
    )
    if answer.status_code != 302:
        raise RuntimeError(f"sign-in failed: {answer.status_code}")
    return session


# --- measurements ------------------------------------------------------------------------
def bench_function(name: str, ct_file: Path, runs: int) -> list[dict]:
    rows = []
    for kind in ("webp", "jpeg", "png"):
        options = RenderOptions(format=kind)

        def render(options=options):
            with open(ct_file, "rb") as stream:
                assert render_frame(stream, options).error is None

        render()  # imports, first-use set-up
        rows.append(report(f"{name}: render_frame alone, {kind}", timed(runs, render)))
    return rows


def bench_http(app, timer: ServerTimer, base: str, name: str, case: tuple, runs: int):
    number, uid = case
    session, rows = sign_in(base), []
    with app.app_context():
        clear = render_cache().clear
    for kind in ("webp", "jpeg"):
        url = f"{base}/viewer/{number}/frames/{uid}/1?format={kind}"

        def fetch(url=url):
            answer = session.get(url, timeout=30)
            assert answer.status_code == 200 and "X-Overread-Render-Error" not in answer.headers

        fetch()
        for label, before, count in (("cold", clear, runs), ("cached", None, runs * 4)):
            timer.samples.clear()
            samples = timed(count, fetch, before)
            what = f"{name}: GET /viewer frame {kind} {label}"
            rows.append(report(f"{what}, client", samples))
            rows.append(report(f"{what}, server", list(timer.samples)))
    return rows


@contextmanager
def orthanc(work: Path) -> Iterator[str]:
    """Start Debian's Orthanc as ``bench_ingest.py`` does; yield its REST base URL."""
    (work / "orthanc-run").mkdir(parents=True, exist_ok=True)
    server = start_orthanc(work / "orthanc-run")
    try:
        yield server.stow_url.split("/dicom-web/")[0]
    finally:
        server.process.terminate()
        server.process.wait(30)


def bench_orthanc(base: str, name: str, ct_file: Path, runs: int) -> list[dict]:
    session, rows = requests.Session(), []
    uploaded = session.post(f"{base}/instances", data=ct_file.read_bytes(), timeout=60)
    url = f"{base}/instances/{uploaded.json()['ID']}/preview"
    for label, headers in (("PNG", {}), ("JPEG", {"Accept": "image/jpeg"})):

        def fetch(headers=headers):
            assert session.get(url, headers=headers, timeout=30).status_code == 200

        fetch()
        rows.append(
            report(f"{name}: Orthanc 1.10 /instances/{{id}}/preview {label}", timed(runs, fetch))
        )
    return rows


# --- the browser half: owned by the viewer UI's engineer --------------------------------
def bench_first_image_in_chromium(base_url: str, viewer_url: str) -> list[dict]:
    """HOOK: time from opening the viewer to the first image painted in Chromium.

    To be written by the engineer who owns the viewer UI and its Playwright tests
    (throttled to about 10 Mbit/s and 100 ms latency). Returns result rows like
    :func:`report`; nothing is measured here yet.
    """
    return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--no-orthanc", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="overread-bench-render-") as tmp:
        work = Path(tmp)
        files = {
            "phantom": make_phantom(work / "phantom.dcm"),
            "noise": make_series(work / "series", 1)[0],
        }
        print("512x512 16-bit CT frames:", ", ".join(files), flush=True)
        app, cases = build_app(work / "overread", files)
        timer = ServerTimer(app.wsgi_app)
        app.wsgi_app = timer
        rows = []
        with live_server(app) as base:
            for name, path in files.items():
                rows += bench_function(name, path, args.runs)
                rows += bench_http(app, timer, base, name, cases[name], args.runs)
            rows += bench_first_image_in_chromium(base, f"/viewer/{cases['phantom'][0]}")
        if not args.no_orthanc and Path(ORTHANC).exists():
            with orthanc(work) as orthanc_base:
                for name, path in files.items():
                    rows += bench_orthanc(orthanc_base, name, path, args.runs)
        elif not args.no_orthanc:
            print("Orthanc not installed (apt-get install orthanc): skipped")
        print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
