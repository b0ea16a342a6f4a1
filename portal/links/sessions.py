"""Viewer sessions: what a redeemed viewing link opens, for one case alone.

A session's token is 256 random bits, stored only as its SHA-256, sent as an
HttpOnly cookie on ``/viewer``. A session ends at its idle or absolute
timeout, when revoked (the case reassigned, closed or cancelled), or when its
radiologist no longer holds the case; each request checks all of these.
Requesters and admins open the viewer through their own sign-in instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, request
from sqlalchemy import select

from portal import clock
from portal.audit.operations import record, record_now
from portal.auth.models import User
from portal.cases.access import View, get_case
from portal.cases.models import Case
from portal.errors import NotFound, OverreadError
from portal.extensions import db
from portal.links.models import ViewerSession
from portal.links.operations import holding_problem
from portal.opaque import hash_token

VIEWER_COOKIE = "overread_viewer"


class ViewerRefused(OverreadError):
    """No viewer session nor sign-in gives access to the case's viewer."""

    title = "Viewing session ended"

    def __init__(
        self, reason: str, status_code: int, session_dead: bool, case_number: str | None
    ) -> None:
        super().__init__("Your viewing session has ended.")
        self.reason, self.status_code, self.session_dead = reason, status_code, session_dead
        self.case_number = case_number


@dataclass(frozen=True)
class ViewerAccess:
    """Who opens a case's viewer, how much they see, and through which session."""

    case: Case
    user: User
    view: View
    session: ViewerSession | None  # None: through the user's own sign-in


def _session_for(token: str | None) -> ViewerSession | None:
    if not token or len(token) > 100:
        return None
    return db.session.scalars(
        select(ViewerSession).where(ViewerSession.token_hash == hash_token(token))
    ).first()


def _why_session_ended(found: ViewerSession | None, case: Case) -> str | None:
    if found is None:
        return "no session"
    if found.case_id != case.id:
        return "another case"
    now, config = clock.now(), current_app.config
    if found.revoked_at is not None:
        return "revoked"
    if now >= found.expires_at:
        return "absolute timeout"
    if now - found.last_seen_at > config["VIEWER_IDLE_TIMEOUT"]:
        return "idle timeout"
    return holding_problem(found.user, case)


def check_viewer_session(case: Case) -> tuple[ViewerSession | None, str | None]:
    """Return this request's live viewer session for ``case``, or ``None`` and why not.

    A live session is touched (``last_seen_at``); the caller commits.
    """
    found = _session_for(request.cookies.get(VIEWER_COOKIE))
    reason = _why_session_ended(found, case)
    if reason:
        return None, reason
    found.last_seen_at = clock.now()
    return found, None


def viewer_session(case: Case) -> ViewerSession | None:
    """Return this request's live viewer session for ``case`` (touched), or ``None``."""
    return check_viewer_session(case)[0]


def end_viewer_session() -> ViewerSession | None:
    """End this request's viewer session, if it has a live one; the caller commits."""
    found = _session_for(request.cookies.get(VIEWER_COOKIE))
    if found is None or found.revoked_at is not None:
        return None
    found.revoked_at = clock.now()
    record("viewer.ended", found.user, case_id=found.case_id, target=f"viewer:{found.id}")
    return found


def open_viewer(number: str, signed_in: User | None) -> ViewerAccess:
    """Decide who opens the viewer of case ``number``: a viewer session, else a sign-in.

    Audits ``case.viewed``; the caller commits.

    :raise ViewerRefused: neither gives access; the ``viewer.refused`` row is committed.
    """
    case = db.session.scalars(select(Case).where(Case.number == number.upper())).first()
    found, reason = check_viewer_session(case) if case else (None, "no such case")
    if found is not None:
        access = ViewerAccess(case, found.user, View.READER, found)
    else:
        access = _signed_in_access(number, signed_in)
    if access is None:
        raise _viewer_refused(case, number, signed_in, reason)
    via = "viewer session" if access.session else "sign-in"
    record("case.viewed", access.user, case_id=access.case.id, target=access.case.number, via=via)
    return access


def _viewer_refused(
    case: Case | None, number: str, signed_in: User | None, reason: str
) -> ViewerRefused:
    """Audit a refused viewer (committed); 401 signed out, 403 signed in or another case's."""
    record_now(
        "viewer.refused",
        signed_in,
        case_id=case.id if case else None,
        target=case.number if case else number[:20],
        reason=reason,
    )
    status = 403 if signed_in is not None or reason == "another case" else 401
    dead = reason not in ("no session", "another case", "no such case")
    return ViewerRefused(reason, status, dead, case.number if case else None)


def _signed_in_access(number: str, user: User | None) -> ViewerAccess | None:
    if user is None:
        return None
    try:
        case, view = get_case(user, number)
    except NotFound:
        return None
    return ViewerAccess(case, user, view, None) if view != View.OFFER else None
