"""Drain the outbox: claim due rows, send them, record what happened.

Claiming marks rows ``sending`` with a lease, under ``FOR UPDATE SKIP LOCKED``
on PostgreSQL (SQLite serialises writers anyway), so several dispatchers never
take the same row. A dispatcher that dies mid-send leaves its lease to expire
and another picks the row up again; the lease's end time is the claim's token,
so a dispatcher whose lease ran out sends nothing a newer claimant now holds.
Sending happens outside any transaction: a slow SMTP server or API never holds
a database lock.

A row that keeps failing is retried with exponential backoff; one that names a
fallback channel (a page: Slack or SMS) moves there after
``DISPATCH_FALLBACK_AFTER`` failed attempts, as a new row, so nothing is lost
when one provider is down. A row whose body holds ``{secret}`` gets a fresh
secret (a viewing link, a verification code) just before each attempt; the
outbox keeps only the placeholder.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import and_, or_, select, update

from portal import clock
from portal.errors import Conflict, NotFound
from portal.extensions import db
from portal.notifications.channels import Channel, Delivery, DeliveryError, build_channels
from portal.notifications.models import Notification, Status
from portal.notifications.operations import enqueue
from portal.notifications.secrets import FILL_IN, maker_for

logger = logging.getLogger(__name__)
LEASE = timedelta(minutes=2)
SEND_MARGIN = timedelta(seconds=30)  # lease left at least this long before a send starts


@dataclass(frozen=True)
class Claim:
    """Rows held by one dispatcher until ``lease_until``, which identifies the claim."""

    ids: list[int]
    lease_until: datetime


@dataclass(frozen=True)
class Failure:
    error: str
    permanent: bool = False


def claim_due(limit: int) -> Claim:
    """Mark up to ``limit`` due rows as ours and return them with our lease."""
    now = clock.now()
    _fail_abandoned(now)
    due = or_(
        and_(Notification.status == Status.PENDING, Notification.due_at <= now),
        and_(Notification.status == Status.SENDING, Notification.claimed_until < now),
    )
    query = (
        select(Notification)
        .where(due)
        .order_by(Notification.due_at, Notification.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = db.session.scalars(query).all()
    claim = Claim([row.id for row in rows], now + LEASE)
    for row in rows:
        row.status = Status.SENDING
        row.claimed_until = claim.lease_until
        row.attempts += 1
    db.session.commit()
    return claim


def _fail_abandoned(now: datetime) -> None:
    """Give up on rows whose last allowed attempt died mid-send (a poison message)."""
    db.session.execute(
        update(Notification)
        .where(
            Notification.status == Status.SENDING,
            Notification.claimed_until < now,
            Notification.attempts >= current_app.config["DISPATCH_MAX_ATTEMPTS"],
        )
        .values(
            status=Status.FAILED,
            claimed_until=None,
            last_error="lease expired during the last allowed attempt",
        )
        .execution_options(synchronize_session=False)
    )


def deliver(notification_id: int, channels: dict[str, Channel], lease_until: datetime) -> bool:
    """Send one row claimed with ``lease_until`` and record the outcome.

    :return: ``False`` when the claim was lost (lease over, row cancelled or taken).
    """
    row = _detach_if_ours(notification_id, lease_until)
    if row is None:
        return False
    outcome = _send(row, channels)
    _record(notification_id, outcome)
    return True


def _detach_if_ours(notification_id: int, lease_until: datetime) -> Notification | None:
    row = db.session.get(Notification, notification_id)
    ours = (
        row is not None
        and row.status == Status.SENDING
        and row.claimed_until == lease_until
        and lease_until - clock.now() > SEND_MARGIN
    )
    if ours:
        db.session.expunge(row)
    db.session.rollback()  # hold no transaction (nor SQLite's write lock) while sending
    return row if ours else None


def _send(row: Notification, channels: dict[str, Channel]) -> Delivery | Failure:
    channel = channels.get(row.channel)
    if channel is None:
        return Failure(f"no channel named {row.channel!r} is configured", permanent=True)
    try:
        if FILL_IN in row.body:
            refused = _fill_in_secret(row)
            if refused is not None:
                return refused
        return channel.send(row)
    except DeliveryError as exc:
        return Failure(str(exc), permanent=exc.permanent)
    except Exception as exc:  # a broken channel must not stop the worker or lose the row
        logger.exception("notification %s: channel %r crashed", row.id, row.channel)
        return Failure(f"{exc.__class__.__name__}: {exc}")


def _fill_in_secret(row: Notification) -> Failure | None:
    """Put a fresh secret into the detached ``row``'s body (never into the outbox)."""
    maker = maker_for(row.kind)
    if maker is None:
        return Failure(f"no secret maker for kind {row.kind!r}", permanent=True)
    try:
        secret = maker(row)
    except (Conflict, NotFound) as exc:  # e.g. the case was reassigned: no link is due
        db.session.rollback()
        return Failure(f"not sent: {exc}", permanent=True)
    except BaseException:
        db.session.rollback()
        raise
    row.body = row.body.replace(FILL_IN, secret)
    return None


def _record(notification_id: int, outcome: Delivery | Failure) -> None:
    row = db.session.get(Notification, notification_id)
    if isinstance(outcome, Delivery):
        row.status = Status.SENT
        row.sent_at = clock.now()
        row.delivered_via = outcome.via
        row.provider_message_id = outcome.provider_message_id
        row.provider_status = outcome.provider_status
        row.last_error = None
        logger.info("notification %s sent via %s", row.id, outcome.via)
    elif row.status == Status.SENDING:  # a row cancelled meanwhile stays cancelled
        _schedule_retry(row, outcome)
    row.claimed_until = None
    db.session.commit()


def _schedule_retry(row: Notification, failure: Failure) -> None:
    config = current_app.config
    row.last_error = failure.error[:2000]
    if row.fallback_channel and (
        failure.permanent or row.attempts >= config["DISPATCH_FALLBACK_AFTER"]
    ):
        fall_back(row)
        return
    if failure.permanent or row.attempts >= config["DISPATCH_MAX_ATTEMPTS"]:
        row.status = Status.FAILED
        logger.warning("notification %s failed for good after %s attempts", row.id, row.attempts)
        return
    backoff = config["DISPATCH_BACKOFF_SECONDS"] * 2 ** (row.attempts - 1)
    row.status = Status.PENDING
    row.due_at = clock.now() + timedelta(seconds=backoff)
    logger.warning("notification %s attempt %s failed; retry in %ss", row.id, row.attempts, backoff)


def fall_back(row: Notification) -> Notification:
    """Give ``row`` up and queue the same message on its fallback channel, due now.

    The caller commits. :return: the copy.
    """
    copy = enqueue(
        channel=row.fallback_channel,
        recipient=row.fallback_recipient,
        kind=row.kind,
        subject=row.subject,
        body=row.body,
        user_id=row.user_id,
        case_id=row.case_id,
        idempotency_key=f"{row.idempotency_key}:fallback"[:200],
    )
    copy.refers_to_id = row.refers_to_id
    db.session.flush()
    row.status = Status.FAILED
    row.last_error = f"{row.last_error} (fell back to {row.fallback_channel} as #{copy.id})"[:2000]
    logger.warning(
        "notification %s failed %s times on %s; fell back to %s as %s",
        row.id,
        row.attempts,
        row.channel,
        row.fallback_channel,
        copy.id,
    )
    return copy


def dispatch_once(channels: dict[str, Channel] | None = None) -> int:
    """Send everything due now and return how many rows were handled."""
    channels = channels if channels is not None else build_channels(current_app.config)
    _settle(channels)
    handled = 0
    while (claim := claim_due(current_app.config["DISPATCH_BATCH"])).ids:
        handled += sum(deliver(row_id, channels, claim.lease_until) for row_id in claim.ids)
    return handled


def _settle(channels: dict[str, Channel]) -> None:
    """Let each channel that has ``settle()`` catch up; one failing stops no sending."""
    for name, channel in channels.items():
        settle = getattr(channel, "settle", None)
        if settle is None:
            continue
        try:
            settle()
        except Exception:
            logger.exception("channel %r could not settle its delivery reports", name)
            db.session.rollback()


def run_forever(
    stop: threading.Event, poll_seconds: float = 1.0, channels: dict[str, Channel] | None = None
) -> None:
    """Dispatch until ``stop`` is set; errors are logged and the loop goes on."""
    channels = channels if channels is not None else build_channels(current_app.config)
    while not stop.is_set():
        try:
            dispatch_once(channels)
        except Exception:
            logger.exception("dispatcher pass failed")
            db.session.rollback()
        stop.wait(poll_seconds)
