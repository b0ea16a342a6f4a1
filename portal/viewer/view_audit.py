"""Audit image reads aggregated per series, so the log stays readable.

Scrolling a 300-slice stack is one ``case.images_viewed`` row, not 300:

- through a viewer session: at most one row per (session, series) for the
  session's whole life (its target names both);
- through a sign-in (or a DICOMweb token): at most one row per (user, series)
  per ten minutes.

The row is written with the first image of its span and says which one that
was. The audit log is append-only, so a row cannot count the images after it;
each image request is in the request log. Two requests racing to write the same
row are serialised by the audit chain's lock, then the second sees the first's
row. Each process remembers the spans it found audited (committed rows only), so
most image requests cost no audit query.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select

from portal import clock
from portal.audit import operations as audit
from portal.audit.models import AuditEvent
from portal.auth.models import User
from portal.extensions import db

SIGN_IN_SPAN = timedelta(minutes=10)
SESSION_MEMO = timedelta(minutes=10)  # how long a process trusts its memory of a session's row
MEMO_ENTRIES = 10_000


@dataclass(frozen=True)
class SeriesView:
    """One image read: by whom, of which series, through what."""

    action: str
    actor: User
    series_id: int
    case_id: int | None = None
    session_id: int | None = None
    via: str = "sign-in"  # or "api token"; "viewer session" whenever there is a session

    @property
    def target(self) -> str:
        series = f"series:{self.series_id}"
        return f"{series}/viewer:{self.session_id}" if self.session_id else series


def note_image_read(view: SeriesView, **details) -> bool:
    """Audit ``view`` unless its span already has a row; ``True`` if a row was added.

    The caller commits.

    :param details: facts about the first image of the span (ids, frame number).
    """
    memo = _memo()
    now = clock.now()
    key = (view.action, view.actor.id, view.target)
    if memo.get(key, now) > now:
        return False
    covered = _covered_until(view, now)
    if covered is None:
        audit.lock_chain()  # the re-check then sees any rival row
        covered = _covered_until(view, now)
    if covered is not None:
        _remember(memo, key, covered, now)
        return False
    via = "viewer session" if view.session_id else view.via
    audit.record(
        view.action, view.actor, case_id=view.case_id, target=view.target, via=via, **details
    )
    return True  # remembered once a later request finds the row committed


def _covered_until(view: SeriesView, now: datetime) -> datetime | None:
    """Until when an existing row covers ``view``'s span, or ``None`` if none does."""
    query = select(AuditEvent.created_at).where(
        AuditEvent.action == view.action,
        AuditEvent.actor_id == view.actor.id,
        AuditEvent.target == view.target,
    )
    if view.session_id:
        found = db.session.scalars(query.limit(1)).first()
        return None if found is None else now + SESSION_MEMO
    since = now - SIGN_IN_SPAN
    found = db.session.scalars(
        query.where(AuditEvent.created_at > since).order_by(AuditEvent.created_at.desc()).limit(1)
    ).first()
    return None if found is None else found + SIGN_IN_SPAN


def _remember(memo: dict, key: tuple, until: datetime, now: datetime) -> None:
    if len(memo) >= MEMO_ENTRIES:
        for stale in [k for k, expiry in memo.items() if expiry <= now]:
            del memo[stale]
        if len(memo) >= MEMO_ENTRIES:
            memo.clear()
    memo[key] = until


def _memo() -> dict:
    """This app's memory of audited spans: {(action, actor id, target): covered until}."""
    return current_app.extensions.setdefault("overread_image_audit_memo", {})
