"""Twilio's delivery reports: the outbox row's ``provider_status`` follows each message.

Twilio posts each change (queued, sent, delivered, ...) to ``/sms/status``,
and reports can arrive out of order. A status only replaces one that comes
earlier in a message's life, so a late "sent" never undoes "delivered"; the
update is a single conditional statement, so two reports racing each other
cannot both win. A report may also come before the dispatcher has saved the
message id Twilio's send answered with (a "failed" can come at once): it is
kept (:class:`EarlyDeliveryReport`) and applied by the dispatcher's next pass,
so an undelivered page still falls back.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import delete, func, or_, select, update

from portal import clock
from portal.database import begin_read_only
from portal.extensions import db
from portal.notifications.dispatcher import fall_back
from portal.notifications.models import EarlyDeliveryReport, Notification
from portal.oncall.pages import still_wanted

logger = logging.getLogger(__name__)

#: How far along its life each Twilio message status is; a final status ranks 4 or more.
STATUS_RANKS = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "canceled": 4,
    "failed": 4,
    "undelivered": 4,
    "partially_delivered": 4,
    "delivered": 4,
    "read": 5,
}
FAILED_STATUSES = frozenset({"failed", "undelivered"})
#: How long a report waits for its message id; one whose message was never recorded
#: (the dispatcher died after Twilio took it, and sent it again) is dropped then.
EARLY_REPORT_KEPT = timedelta(hours=1)


def record_delivery_status(message_sid: str, status: str, error_code: str | None = None) -> bool:
    """Set the status of the SMS row Twilio knows as ``message_sid``; commit.

    A report naming a message id no row has yet is kept for
    :func:`apply_early_reports`.

    :return: whether a row changed (``False``: unknown status, stale report, or kept).
    """
    if status not in STATUS_RANKS:
        logger.info("SMS %s: status %r ignored", message_sid, status)
        return False
    changed = _apply(message_sid, status, error_code)
    if not changed and not _recorded(message_sid):
        db.session.add(
            EarlyDeliveryReport(
                provider_message_id=message_sid[:100],
                status=status,
                error_code=error_code[:20] if error_code else None,
            )
        )
        logger.info("SMS %s: %s reported before its id was saved; kept", message_sid, status)
    db.session.commit()
    return changed


def apply_early_reports() -> int:
    """Apply the kept reports whose message id is now saved, and drop stale ones; commit.

    Two dispatchers may apply the same report: the update moves a row forward
    only once, so the page falls back once.

    :return: how many reports were applied.
    """
    if not db.session().in_transaction():
        begin_read_only()  # the usual answer is "none": no write lock for that
    waiting = db.session.scalar(select(func.count()).select_from(EarlyDeliveryReport))
    db.session.commit()
    if not waiting:
        return 0
    recorded = select(Notification.provider_message_id).where(Notification.delivered_via == "sms")
    reports = db.session.execute(
        select(
            EarlyDeliveryReport.id,
            EarlyDeliveryReport.provider_message_id,
            EarlyDeliveryReport.status,
            EarlyDeliveryReport.error_code,
        )
        .where(EarlyDeliveryReport.provider_message_id.in_(recorded))
        .order_by(EarlyDeliveryReport.id)
    ).all()
    for _, message_sid, status, error_code in reports:
        _apply(message_sid, status, error_code)
    done = EarlyDeliveryReport.id.in_([report.id for report in reports])
    stale = EarlyDeliveryReport.received_at < clock.now() - EARLY_REPORT_KEPT
    db.session.execute(delete(EarlyDeliveryReport).where(done))
    dropped = db.session.execute(delete(EarlyDeliveryReport).where(stale)).rowcount
    if dropped:
        logger.warning("%s SMS delivery reports named no recorded message; dropped", dropped)
    db.session.commit()
    return len(reports)


def _apply(message_sid: str, status: str, error_code: str | None) -> bool:
    """Move the row's status forward to ``status`` if it is behind; fall back on failure."""
    rank = STATUS_RANKS[status]
    earlier = [name for name, other in STATUS_RANKS.items() if other < rank]
    values: dict = {"provider_status": status}
    if status in FAILED_STATUSES:
        values["last_error"] = f"Twilio reported the SMS {status} (error {error_code or 'none'})"
    result = db.session.execute(
        update(Notification)
        .where(
            Notification.provider_message_id == message_sid,
            Notification.delivered_via == "sms",
            or_(Notification.provider_status.is_(None), Notification.provider_status.in_(earlier)),
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    changed = result.rowcount > 0
    if changed and status in FAILED_STATUSES:
        logger.warning("SMS %s was %s (error %s)", message_sid, status, error_code)
        _fall_back_if_still_wanted(message_sid)
    return changed


def _recorded(message_sid: str) -> bool:
    """Tell whether an SMS row carries this message id."""
    found = db.session.scalar(
        select(Notification.id)
        .where(Notification.provider_message_id == message_sid, Notification.delivered_via == "sms")
        .limit(1)
    )
    return found is not None


def _fall_back_if_still_wanted(message_sid: str) -> None:
    """An SMS page or link that never arrived goes again on the other channel (Slack)."""
    row = db.session.scalars(
        select(Notification).where(
            Notification.provider_message_id == message_sid, Notification.delivered_via == "sms"
        )
    ).first()
    if row is not None and row.fallback_channel and still_wanted(row):
        copy = fall_back(row)
        logger.info("SMS %s undelivered: %s falls back as %s", message_sid, row.id, copy.id)
