"""The notification outbox and the dispatcher that drains it."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from datetime import timedelta
from functools import partial

import pytest
from sqlalchemy import func, select

from portal.auth import operations
from portal.auth.models import User
from portal.errors import Conflict
from portal.extensions import db
from portal.notifications import channels as channels_module
from portal.notifications import secrets as secrets_module
from portal.notifications.channels import Delivery, DeliveryError
from portal.notifications.dispatcher import LEASE, claim_due, deliver, dispatch_once
from portal.notifications.models import Notification, Status
from portal.notifications.operations import cancel_pending, enqueue
from tests.harness import free_port


# --- helpers ------------------------------------------------------------------
def add(app, count: int = 1, recipient: str = "pat@example.org", **fields) -> list[int]:
    """Enqueue ``count`` notifications and commit; return their ids."""
    fields = {
        "channel": "email",
        "kind": "test",
        "subject": "Case 7 is ready",
        "body": "Open Overread to read it.",
        **fields,
    }
    with app.app_context():
        rows = [
            enqueue(recipient=recipient, idempotency_key=uuid.uuid4().hex, **fields)
            for _ in range(count)
        ]
        db.session.commit()
        return [row.id for row in rows]


def load(app, notification_id: int) -> Notification:
    with app.app_context():
        row = db.session.get(Notification, notification_id)
        db.session.expunge(row)
        return row


def dispatch(app, channels=None) -> int:
    with app.app_context():
        return dispatch_once(channels)


class FakeChannel:
    """Count sends per row (from any thread); run ``effect`` and raise ``error`` if given."""

    name = "fake"

    def __init__(self, effect=None, error: Exception | None = None) -> None:
        self.effect, self.error = effect, error
        self.sent: Counter[int] = Counter()
        self.lock = threading.Lock()

    def send(self, notification: Notification) -> Delivery:
        with self.lock:
            self.sent[notification.id] += 1
        if self.effect:
            self.effect(notification)
        if self.error:
            raise self.error
        return Delivery(via=self.name)


# --- enqueue ------------------------------------------------------------------
@pytest.mark.parametrize("app", ["sqlite", "postgresql"], indirect=True)
def test_enqueue_rolls_back_with_the_change(app):
    with app.app_context():
        operations.create_user("pat@example.org", "Pat", "patient", "long enough password")
        enqueue(
            channel="email",
            recipient="pat@example.org",
            kind="welcome",
            body="Hi",
            idempotency_key="welcome:pat",
        )
        db.session.rollback()
        assert db.session.scalar(select(func.count()).select_from(Notification)) == 0
        assert db.session.scalar(select(func.count()).select_from(User)) == 0


def test_same_idempotency_key_returns_the_same_row(app):
    welcome = partial(enqueue, channel="email", kind="welcome", idempotency_key="welcome:pat")
    with app.app_context():
        first = welcome(recipient="pat@example.org", body="Hi")
        assert welcome(recipient="pat@example.org", body="Hi") is first
        db.session.commit()
        again = welcome(recipient="other@example.org", body="Hello again")
        assert (again.id, again.recipient) == (first.id, "pat@example.org")
        assert db.session.scalar(select(func.count()).select_from(Notification)) == 1


# --- dispatching --------------------------------------------------------------
def test_log_channel_sends_due_rows_and_leaves_later_ones(app, frozen_clock):
    due = add(app, 2)
    (later,) = add(app, due_at=frozen_clock.moment + timedelta(minutes=5))
    assert dispatch(app) == 2
    for row in [load(app, i) for i in due]:
        assert (row.status, row.delivered_via, row.attempts) == (Status.SENT, "log", 1)
        assert row.sent_at == frozen_clock.moment
    assert load(app, later).status == Status.PENDING
    frozen_clock.advance(timedelta(minutes=5))
    assert dispatch(app) == 1
    assert load(app, later).status == Status.SENT


def test_email_goes_through_smtp(make_app, smtp):
    port, inbox = smtp
    app = make_app(SMTP_HOST="127.0.0.1", SMTP_PORT=port, MAIL_FROM="Overread <ops@example.org>")
    (notification_id,) = add(
        app,
        recipient="doc@example.org",
        subject="Report signed",
        body="Case 12 has a signed report.",
    )
    assert dispatch(app) == 1
    (message,) = inbox.messages
    assert message["To"] == "doc@example.org"
    assert message["From"] == "Overread <ops@example.org>"
    assert message["Subject"] == "Report signed"
    assert message.get_content().strip() == "Case 12 has a signed report."
    row = load(app, notification_id)
    assert (row.status, row.delivered_via) == (Status.SENT, "email")
    assert row.provider_message_id == message["Message-ID"]


def test_smtp_down_backs_off_then_fails(make_app, frozen_clock):
    app = make_app(
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=free_port(),
        DISPATCH_MAX_ATTEMPTS=3,
        DISPATCH_BACKOFF_SECONDS=30,
    )
    (notification_id,) = add(app)
    for attempt, backoff in ((1, 30), (2, 60)):
        assert dispatch(app) == 1
        row = load(app, notification_id)
        assert (row.status, row.attempts) == (Status.PENDING, attempt)
        assert row.due_at == frozen_clock.moment + timedelta(seconds=backoff)
        assert row.last_error.startswith("SMTP: ")
        assert dispatch(app) == 0  # not due again yet
        frozen_clock.advance(timedelta(seconds=backoff))
    assert dispatch(app) == 1
    row = load(app, notification_id)
    assert (row.status, row.attempts) == (Status.FAILED, 3)
    assert "ConnectionRefusedError" in row.last_error
    assert dispatch(app) == 0


def test_row_stuck_in_sending_is_reclaimed_after_its_lease(app, frozen_clock):
    (notification_id,) = add(app)
    with app.app_context():
        claim_due(10)  # a dispatcher claims the row, then dies before sending
    assert dispatch(app) == 0
    frozen_clock.advance(LEASE + timedelta(seconds=1))
    assert dispatch(app) == 1
    row = load(app, notification_id)
    assert (row.status, row.attempts) == (Status.SENT, 2)


def test_row_whose_lease_expired_is_not_sent_by_its_first_claimant(app, frozen_clock):
    (notification_id,) = add(app, channel="fake")
    channels = {"fake": FakeChannel()}
    with app.app_context():
        slow = claim_due(10)
        frozen_clock.advance(LEASE + timedelta(seconds=1))
        fast = claim_due(10)
        assert slow.ids == fast.ids == [notification_id]
        assert deliver(notification_id, channels, fast.lease_until)
        assert not deliver(notification_id, channels, slow.lease_until)
    assert channels["fake"].sent == {notification_id: 1}


def test_stale_row_past_its_last_attempt_fails(make_app, frozen_clock):
    app = make_app(DISPATCH_MAX_ATTEMPTS=1)
    (notification_id,) = add(app)
    with app.app_context():
        claim_due(10)
    frozen_clock.advance(LEASE + timedelta(seconds=1))
    assert dispatch(app) == 0
    row = load(app, notification_id)
    assert row.status == Status.FAILED
    assert "lease expired" in row.last_error


def test_unknown_channel_fails_without_stopping_the_rest(app):
    (pigeon,) = add(app, channel="pigeon")
    (email,) = add(app)
    assert dispatch(app) == 2
    row = load(app, pigeon)
    assert (row.status, row.attempts) == (Status.FAILED, 1)
    assert "'pigeon'" in row.last_error
    assert load(app, email).status == Status.SENT


@pytest.mark.parametrize(
    ("error", "recorded"),
    [
        (DeliveryError("provider said 503"), "provider said 503"),
        (KeyError("bug"), "KeyError: 'bug'"),
    ],
)
def test_failed_send_is_retried_later(app, frozen_clock, error, recorded):
    (notification_id,) = add(app, channel="fake")
    assert dispatch(app, {"fake": FakeChannel(error=error)}) == 1
    row = load(app, notification_id)
    assert (row.status, row.attempts, row.last_error) == (Status.PENDING, 1, recorded)
    assert row.due_at == frozen_clock.moment + timedelta(seconds=30)


def add_page(app, **fields) -> int:
    """A page on Slack whose fallback is SMS."""
    with app.app_context():
        row = enqueue(
            channel="slack",
            recipient="U0PAGED",
            kind="case.page",
            body="Overread STAT CT chest, case K7Q2XM.",
            idempotency_key=uuid.uuid4().hex,
            **fields,
        )
        row.fallback_channel, row.fallback_recipient = "sms", "+15551230001"
        db.session.commit()
        return row.id


def test_row_that_keeps_failing_falls_back_to_the_other_channel(app, frozen_clock):
    slack, sms = FakeChannel(error=DeliveryError("Slack answered 500")), FakeChannel()
    channels = {"slack": slack, "sms": sms}
    page_id = add_page(app)
    assert dispatch(app, channels) == 1  # attempt 1 fails: retried after the backoff
    assert load(app, page_id).status == Status.PENDING
    frozen_clock.advance(timedelta(seconds=30))
    assert dispatch(app, channels) == 2  # attempt 2 fails: the copy goes by SMS at once
    page = load(app, page_id)
    (copy_id,) = sms.sent
    copy = load(app, copy_id)
    assert page.status == Status.FAILED and page.attempts == 2
    assert page.last_error == f"Slack answered 500 (fell back to sms as #{copy_id})"
    assert (copy.status, copy.channel, copy.recipient) == (Status.SENT, "sms", "+15551230001")
    assert (copy.kind, copy.body, copy.fallback_channel) == (page.kind, page.body, None)


def test_permanent_failure_falls_back_at_once(app):
    sms = FakeChannel()
    page_id = add_page(app)
    dispatch(app, {"sms": sms})  # no slack channel at all: a permanent failure
    assert load(app, page_id).status == Status.FAILED
    assert len(sms.sent) == 1


SECRETS = iter(f"https://overread.test/l/secret{n}" for n in range(1000))


def make_secret(row: Notification) -> str:
    """A secret maker for the tests: a new link per attempt."""
    if row.recipient == "gone@example.org":
        raise Conflict("You no longer hold this case.")
    return next(SECRETS)


@pytest.fixture
def secret_kind(monkeypatch):
    maker = "tests.test_outbox:make_secret"
    monkeypatch.setitem(secrets_module.SECRET_MAKERS, "test.secret", maker)
    return "test.secret"


def test_secret_is_made_at_each_attempt_and_never_stored(app, frozen_clock, secret_kind):
    bodies = []
    failing = FakeChannel(
        effect=lambda row: bodies.append(row.body), error=DeliveryError("timed out")
    )
    (row_id,) = add(app, channel="fake", kind=secret_kind, body="Your link: {secret}")
    dispatch(app, {"fake": failing})
    frozen_clock.advance(timedelta(seconds=30))
    dispatch(app, {"fake": failing})
    assert len(bodies) == 2 and bodies[0] != bodies[1]
    assert all(body.startswith("Your link: https://overread.test/l/secret") for body in bodies)
    assert load(app, row_id).body == "Your link: {secret}"


def test_secret_maker_refusal_fails_the_row_without_sending(app, secret_kind):
    channel = FakeChannel()
    (row_id,) = add(
        app, channel="fake", kind=secret_kind, body="{secret}", recipient="gone@example.org"
    )
    dispatch(app, {"fake": channel})
    row = load(app, row_id)
    assert row.status == Status.FAILED
    assert row.last_error == "not sent: You no longer hold this case."
    assert not channel.sent


def test_placeholder_without_a_maker_is_never_sent(app):
    channel = FakeChannel()
    (row_id,) = add(app, channel="fake", kind="test", body="Code: {secret}")
    dispatch(app, {"fake": channel})
    assert load(app, row_id).status == Status.FAILED and not channel.sent


def test_sending_holds_no_database_lock(app):
    # On SQLite a held transaction is the one write lock: a slow send must not block the web.
    def write_meanwhile(notification):
        if notification.kind != "written meanwhile":
            add(app, channel="fake", kind="written meanwhile")

    add(app, channel="fake")
    assert dispatch(app, {"fake": FakeChannel(write_meanwhile)}) == 2


def test_row_cancelled_while_sending_stays_cancelled(app):
    def cancel(notification):
        with app.app_context():
            cancel_pending(db.session.get(Notification, notification.id), "case accepted")
            db.session.commit()

    (notification_id,) = add(app, channel="fake")
    dispatch(app, {"fake": FakeChannel(cancel, DeliveryError("timed out"))})
    assert load(app, notification_id).status == Status.CANCELLED


def test_dispatch_cli_prints_the_count(app, runner):
    add(app, 3)
    result = runner.invoke(args=["dispatch", "--once"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "dispatched 3 notifications"


@pytest.mark.postgres
def test_racing_dispatchers_send_each_row_once(make_app, monkeypatch):
    channel = FakeChannel()
    monkeypatch.setitem(channels_module.CHANNEL_FACTORIES, "fake", lambda config: channel)
    app = make_app("postgresql", DISPATCH_BATCH=7)
    ids = add(app, 200, channel="fake")
    start, handled = threading.Barrier(2), []

    def dispatcher() -> None:
        with app.app_context():
            start.wait()
            handled.append(dispatch_once())
            db.session.remove()

    threads = [threading.Thread(target=dispatcher) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(handled) == 200 and len(handled) == 2 and min(handled) > 0
    assert channel.sent == dict.fromkeys(ids, 1)
    with app.app_context():
        statuses = db.session.scalars(select(Notification.status)).all()
    assert set(statuses) == {Status.SENT}
