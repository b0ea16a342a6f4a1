"""Put notifications into the outbox, inside the caller's transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from portal import clock
from portal.extensions import db
from portal.notifications.models import InboundMessage, Notification, Status


def enqueue(
    *,
    channel: str,
    recipient: str,
    kind: str,
    body: str,
    idempotency_key: str,
    subject: str = "",
    user_id: int | None = None,
    case_id: int | None = None,
    due_at: datetime | None = None,
) -> Notification:
    """Add a notification to the current transaction; the caller commits.

    A second call with the same ``idempotency_key`` returns the first row
    instead of adding another, so a retried operation never notifies twice.
    """
    existing = db.session.scalars(
        select(Notification).where(Notification.idempotency_key == idempotency_key)
    ).first()
    if existing is not None:
        return existing
    notification = Notification(
        channel=channel,
        recipient=recipient,
        kind=kind,
        subject=subject,
        body=body,
        idempotency_key=idempotency_key,
        user_id=user_id,
        case_id=case_id,
        due_at=due_at or clock.now(),
        status=Status.PENDING,
    )
    db.session.add(notification)
    return notification


def cancel_pending(notification: Notification, reason: str) -> None:
    """Withdraw a notification that has not been sent yet."""
    if notification.status in (Status.PENDING, Status.SENDING):
        notification.status = Status.CANCELLED
        notification.last_error = reason


def first_delivery(provider: str, external_id: str) -> bool:
    """Record a webhook delivery (committed); ``False`` when it was recorded before.

    The unique constraint decides, so two copies arriving at once cannot both pass.
    """
    db.session.add(InboundMessage(provider=provider, external_id=external_id[:100]))
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return False
    return True
