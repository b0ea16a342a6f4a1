"""Twilio's delivery reports: the outbox row's ``provider_status`` follows each message.

Twilio posts each change (queued, sent, delivered, ...) to ``/sms/status``,
and reports can arrive out of order. A status only replaces one that comes
earlier in a message's life, so a late "sent" never undoes "delivered"; the
update is a single conditional statement, so two reports racing each other
cannot both win.
"""

from __future__ import annotations

import logging

from sqlalchemy import or_, select, update

from portal.extensions import db
from portal.notifications.dispatcher import fall_back
from portal.notifications.models import Notification
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


def record_delivery_status(message_sid: str, status: str, error_code: str | None = None) -> bool:
    """Set the status of the SMS row Twilio knows as ``message_sid``; the row commits.

    :return: whether a row changed (``False``: unknown SID, unknown status, or stale report).
    """
    rank = STATUS_RANKS.get(status)
    if rank is None:
        logger.info("SMS %s: status %r ignored", message_sid, status)
        return False
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
    db.session.commit()
    return changed


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
