"""Benchmark paging: case submission to the first page handed to Slack and SMS, and escalation.

Runs the real app (SQLite on embedded defaults, or ``--postgres URL``) with
the dispatcher in a thread, the real slack_sdk and twilio clients talking HTTP
to the test suite's local fakes of Slack and Twilio, and one general on-call
schedule. Submits ``--cases`` cases one every ``--interval`` seconds and
reports, per channel, p50/p99 seconds from the commit of the submission to
the moment the dispatcher hands the first page of that case to the Slack or
SMS client. With a wait of one minute per escalation step, it then waits for
the second steps and reports how late escalation steps fired after their due
time (p50/p99/max). Targets: p99 under 2 s; escalation within 5 s of due.

    .venv/bin/python scripts/bench_paging.py [--cases 200] [--interval 0.1] [--poll 0.5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from datetime import time as clock_time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flask_migrate import upgrade  # noqa: E402
from pydicom.data import get_testdata_file  # noqa: E402
from sqlalchemy import select  # noqa: E402

import bot  # noqa: E402
from portal import clock, create_app  # noqa: E402
from portal.auth import operations as auth_operations  # noqa: E402
from portal.cases.operations import CaseRequest, submit_case  # noqa: E402
from portal.cases.states import Subspecialty, Urgency  # noqa: E402
from portal.extensions import db  # noqa: E402
from portal.notifications.channels import build_channels  # noqa: E402
from portal.notifications.dispatcher import run_forever  # noqa: E402
from portal.notifications.models import Notification, Status  # noqa: E402
from portal.oncall.pages import ESCALATE_KIND, PAGE_KIND  # noqa: E402
from portal.oncall.policies import save_policy  # noqa: E402
from portal.oncall.profiles import profile_for  # noqa: E402
from portal.oncall.schedule_edits import (  # noqa: E402
    LayerSpec,
    add_layer,
    create_schedule,
    set_layer_members,
)
from portal.studies.ingest import ingest_file  # noqa: E402
from portal.studies.models import Study  # noqa: E402
from tests.fakes.slack import FakeSlack  # noqa: E402
from tests.fakes.twilio import FakeTwilio  # noqa: E402

RADIOLOGISTS = 3


class Stopwatch:
    """A channel wrapper noting when the first page of each case is handed to the client."""

    def __init__(self, channel, first_page: dict[int, float]) -> None:
        self.channel, self.first_page, self.name = channel, first_page, channel.name

    def send(self, notification: Notification):
        if notification.kind == PAGE_KIND:
            self.first_page.setdefault(notification.case_id, time.perf_counter())
        return self.channel.send(notification)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def setup(app) -> tuple[int, int]:
    """Make a requester, radiologists reachable on both channels, a schedule; return ids."""
    with app.app_context():
        admin = auth_operations.create_user("admin@bench.test", "Admin", "admin", "x" * 16)
        requester = auth_operations.create_user("doc@bench.test", "Doc", "physician", "x" * 16)
        people = []
        for n in range(RADIOLOGISTS):
            user = auth_operations.create_user(
                f"rad{n}@bench.test", f"Rad {n}", "radiologist", "x" * 16
            )
            profile = profile_for(user)
            profile.slack_user_id = f"U0BENCH{n:03d}"
            profile.mobile, profile.mobile_verified_at = f"+1555000{n:04d}", clock.now()
            profile.page_via = "both"
            db.session.add(profile)
            people.append(user)
        schedule = create_schedule(admin, "General", Subspecialty.GENERAL, "UTC")
        today = clock.now().date()
        layer = add_layer(admin, schedule, LayerSpec("Primary", 1, 7, today, clock_time(0)))
        set_layer_members(admin, layer, [people[0].id])
        save_policy(Urgency.URGENT, 1, 2, True, admin)  # one minute per step: see it escalate
        db.session.commit()
        result = ingest_file(get_testdata_file("CT_small.dcm"), requester)
        study_id = db.session.scalar(
            select(Study.id).where(Study.study_instance_uid == result.study_instance_uid)
        )
        return requester.id, study_id


def submit_all(app, requester_id: int, study_id: int, count: int, interval: float):
    """Submit ``count`` cases; return ``{case id: perf_counter at commit}``."""
    submitted = {}
    with app.app_context():
        for n in range(count):
            requester = db.session.get(auth_operations.User, requester_id)
            request = CaseRequest(
                clinical_question="Benchmark case",
                urgency=Urgency.URGENT,
                study_ids=[study_id],
                subject_name=f"Bench Patient {n}",
            )
            case_id = submit_case(requester, request).id
            db.session.commit()
            submitted[case_id] = time.perf_counter()
            db.session.close()  # hold no transaction (SQLite: no write lock) while idle
            time.sleep(interval)
    return submitted


def escalation_lateness(app) -> list[float]:
    with app.app_context():
        rows = db.session.scalars(
            select(Notification).where(
                Notification.kind == ESCALATE_KIND, Notification.status == Status.SENT
            )
        ).all()
        return [(row.sent_at - row.due_at).total_seconds() for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between cases")
    parser.add_argument("--poll", type=float, default=0.5, help="dispatcher poll (s)")
    parser.add_argument("--postgres", help="a PostgreSQL URL instead of SQLite")
    parser.add_argument("--no-escalation", action="store_true", help="skip the 2nd steps")
    args = parser.parse_args()

    slack, twilio = FakeSlack(), FakeTwilio().start()
    work = Path(tempfile.mkdtemp(prefix="bench-paging-"))
    config = {
        "SECRET_KEY": "bench-secret-key-that-is-long-enough-0123456789",
        "SQLALCHEMY_DATABASE_URI": args.postgres or f"sqlite:///{work / 'overread.db'}",
        "STORAGE_URL": (work / "storage").as_uri(),
        "SPOOL_DIR": str(work / "spool"),
        "BASE_URL": "http://127.0.0.1:5000",
        **slack.config(),
        **twilio.config(),
    }
    app = bot.init_app(create_app(config))
    with app.app_context():
        upgrade()
    requester_id, study_id = setup(app)

    first_page = {"slack": {}, "sms": {}}
    with app.app_context():
        channels = build_channels(app.config)
    for name in first_page:
        channels[name] = Stopwatch(channels[name], first_page[name])
    stop = threading.Event()

    def dispatcher() -> None:
        with app.app_context():
            run_forever(stop, args.poll, channels)

    worker = threading.Thread(target=dispatcher, daemon=True)
    worker.start()
    started = time.perf_counter()
    submitted = submit_all(app, requester_id, study_id, args.cases, args.interval)
    deadline = time.perf_counter() + 30
    while time.perf_counter() < deadline and any(
        len(pages) < len(submitted) for pages in first_page.values()
    ):
        time.sleep(0.2)
    print(f"paging benchmark: {args.cases} cases, one every {args.interval}s, poll {args.poll}s,")
    print(f"database {'PostgreSQL' if args.postgres else 'SQLite'}; dispatcher in a thread")
    for name, pages in first_page.items():
        delays = [pages[case] - at for case, at in submitted.items() if case in pages]
        missing = len(submitted) - len(delays)
        print(
            f"  submission -> first {name} page: p50 {statistics.median(delays):.3f} s, "
            f"p99 {percentile(delays, 0.99):.3f} s, max {max(delays):.3f} s"
            + (f", {missing} never paged" if missing else "")
        )
    if not args.no_escalation:
        wait_until = started + 60 + args.cases * args.interval + 15
        print(f"  waiting {wait_until - time.perf_counter():.0f} s for the second steps ...")
        time.sleep(max(0.0, wait_until - time.perf_counter()))
    late = escalation_lateness(app)
    print(
        f"  escalation steps fired: {len(late)}; late after due: p50 "
        f"{statistics.median(late):.3f} s, p99 {percentile(late, 0.99):.3f} s, "
        f"max {max(late):.3f} s"
    )
    stop.set()
    worker.join(30)
    slack.stop()
    twilio.stop()


if __name__ == "__main__":
    main()
