"""Write and check the audit log.

Each row stores the hash of the row before it and the hash of its own
content, so removing, reordering or editing a row breaks the chain at that
point, and :func:`verify_chain` names it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC

from flask import has_request_context, request
from sqlalchemy import select, text

from portal import clock
from portal.audit.models import AuditEvent
from portal.extensions import db

GENESIS = "0" * 64
_CHAIN_LOCK_KEY = 0x0A0D17  # pg_advisory_xact_lock key that serialises appends


_COLUMNS = ("seq", "created_at", "actor_id", "actor_email", "action", "case_id", "target", "ip",
            "details", "prev_hash", "hash")  # fmt: skip


def _content_hash(event: AuditEvent) -> str:
    content = {
        "seq": event.seq,
        "created_at": event.created_at.isoformat(),
        "actor_id": event.actor_id,
        "actor_email": event.actor_email,
        "action": event.action,
        "case_id": event.case_id,
        "target": event.target,
        "ip": event.ip,
        "details": event.details,
        "prev_hash": event.prev_hash,
    }
    encoded = json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()


def lock_chain() -> None:
    """Hold the audit chain's append lock until the transaction ends (PostgreSQL).

    SQLite needs nothing: every transaction there begins IMMEDIATE, holding the write lock.
    """
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CHAIN_LOCK_KEY})


_events = AuditEvent.__table__
_LAST_LINK = select(_events.c.seq, _events.c.hash).order_by(_events.c.seq.desc()).limit(1)


def _last_link() -> tuple[int, str]:
    """Return the sequence number and hash of the chain's last row (0 and GENESIS if none)."""
    lock_chain()
    last = db.session.execute(_LAST_LINK).first()
    return (0, GENESIS) if last is None else (last.seq, last.hash)


def record(
    action: str,
    actor=None,
    *,
    case_id: int | None = None,
    target: str | None = None,
    **details,
) -> AuditEvent:
    """Append an event to the current transaction; the caller commits.

    The returned event is not in the session (its row is inserted directly).

    :param action: dotted name such as ``login.failed`` or ``user.role_changed``.
    :param actor: the :class:`~portal.auth.models.User` acting, if any.
    :param details: small JSON-able facts; never patient data.
    """
    last_seq, last_hash = _last_link()
    event = AuditEvent(
        seq=last_seq + 1,
        created_at=clock.now().astimezone(UTC),  # hashed as stored: in UTC
        actor_id=getattr(actor, "id", None),
        actor_email=getattr(actor, "email", None),
        action=action,
        case_id=case_id,
        target=target,
        ip=request.remote_addr if has_request_context() else None,
        details=json.dumps(details, sort_keys=True, default=str),
        prev_hash=last_hash,
    )
    event.hash = _content_hash(event)
    # Inserted now, not at the next flush: the next record() in this transaction reads it.
    db.session.execute(_events.insert(), {column: getattr(event, column) for column in _COLUMNS})
    return event


def record_now(action: str, actor=None, **kwargs) -> None:
    """Append an event in a transaction of its own (for refusals, whose request rolls back)."""
    db.session.rollback()
    record(action, actor, **kwargs)
    db.session.commit()


@dataclass
class ChainReport:
    checked: int
    broken_seq: int | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.broken_seq is None


def verify_chain() -> ChainReport:
    """Re-hash every row in order and report the first broken link."""
    expected_prev, expected_seq, checked = GENESIS, 1, 0
    for event in _iter_events():
        if event.seq != expected_seq:
            return ChainReport(checked, expected_seq, f"row {expected_seq} is missing")
        if event.prev_hash != expected_prev:
            return ChainReport(checked, event.seq, "previous-hash does not match the row before")
        if _content_hash(event) != event.hash:
            return ChainReport(checked, event.seq, "content does not match its hash")
        expected_prev, expected_seq, checked = event.hash, expected_seq + 1, checked + 1
    return ChainReport(checked)


def _iter_events() -> Iterator[AuditEvent]:
    query = select(AuditEvent).order_by(AuditEvent.seq).execution_options(yield_per=500)
    yield from db.session.scalars(query)
