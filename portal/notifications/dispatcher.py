"""Drain the outbox: claim due rows, send them, record what happened.

Claiming marks rows ``sending`` with a lease, under ``FOR UPDATE SKIP LOCKED``
on PostgreSQL (SQLite serialises writers anyway), so several dispatchers never
take the same row. A dispatcher that dies mid-send leaves its lease to expire
and another picks the row up again.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from flask import current_app
from sqlalchemy import and_, or_, select

from portal import clock
from portal.extensions import db
from portal.notifications.channels import Channel, DeliveryError, build_channels
from portal.notifications.models import Notification, Status

logger = logging.getLogger(__name__)
LEASE = timedelta(minutes=2)


def claim_due(limit: int) -> list[int]:
    """Mark up to ``limit`` due rows as ours and return their ids."""
    now = clock.now()
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
    for row in rows:
        row.status = Status.SENDING
        row.claimed_until = now + LEASE
        row.attempts += 1
    db.session.commit()
    return [row.id for row in rows]


def deliver(notification_id: int, channels: dict[str, Channel]) -> None:
    """Send one claimed row and record the outcome."""
    row = db.session.get(Notification, notification_id)
    if row is None or row.status != Status.SENDING:
        db.session.rollback()
        return
    channel = channels.get(row.channel)
    try:
        if channel is None:
            raise DeliveryError(f"no channel named {row.channel!r} is configured")
        delivery = channel.send(row)
    except DeliveryError as exc:
        _schedule_retry(row, str(exc))
    else:
        row.status = Status.SENT
        row.sent_at = clock.now()
        row.delivered_via = delivery.via
        row.provider_message_id = delivery.provider_message_id
        row.provider_status = delivery.provider_status
        row.last_error = None
        logger.info("notification %s sent via %s", row.id, delivery.via)
    row.claimed_until = None
    db.session.commit()


def _schedule_retry(row: Notification, error: str) -> None:
    config = current_app.config
    row.last_error = error[:2000]
    if row.attempts >= config["DISPATCH_MAX_ATTEMPTS"]:
        row.status = Status.FAILED
        logger.warning("notification %s failed for good after %s attempts", row.id, row.attempts)
        return
    backoff = config["DISPATCH_BACKOFF_SECONDS"] * 2 ** (row.attempts - 1)
    row.status = Status.PENDING
    row.due_at = clock.now() + timedelta(seconds=backoff)
    logger.warning("notification %s attempt %s failed; retry in %ss", row.id, row.attempts,
                   backoff)


def dispatch_once(channels: dict[str, Channel] | None = None) -> int:
    """Send everything due now and return how many rows were handled."""
    channels = channels if channels is not None else build_channels(current_app.config)
    handled = 0
    while ids := claim_due(current_app.config["DISPATCH_BATCH"]):
        for notification_id in ids:
            deliver(notification_id, channels)
        handled += len(ids)
    return handled


def run_forever(stop: threading.Event, poll_seconds: float = 1.0) -> None:
    """Dispatch until ``stop`` is set; errors are logged and the loop goes on."""
    channels = build_channels(current_app.config)
    while not stop.is_set():
        try:
            dispatch_once(channels)
        except Exception:
            logger.exception("dispatcher pass failed")
            db.session.rollback()
        stop.wait(poll_seconds)
