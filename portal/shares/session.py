"""The recipient's share session, kept apart from any portal sign-in.

It lives under one session key of its own: a signed-in user who opens a share
link keeps their account session untouched, and the share pages never read
``current_user``. The state names the share and its ``session_version``; every
request re-reads the share, so a revocation or the expiry ends the session at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import current_app, session

from portal import clock
from portal.errors import TokenInvalid
from portal.extensions import db
from portal.security import deny
from portal.shares.models import Share
from portal.shares.operations import ended_message, refuse

KEY = "shared_case"


@dataclass
class ShareSession:
    share: Share
    verified: bool


def begin(share: Share) -> None:
    """Start an unverified share session for ``share``, replacing any earlier one."""
    stamp = clock.now().isoformat()
    session[KEY] = {
        "id": share.id,
        "ver": share.session_version,
        "verified": False,
        "at": stamp,
        "seen": stamp,
    }


def mark_verified(share: Share) -> None:
    """Let this session see the case (after the right code), with fresh timeout clocks."""
    begin(share)
    session[KEY]["verified"] = True


def end() -> None:
    session.pop(KEY, None)


def current() -> ShareSession:
    """Return this browser's share session, still valid.

    :raise PermissionDenied: no share was opened in this session (audited).
    :raise TokenInvalid: the share was revoked or expired, or the session timed out; the
        session ends and a ``share.refused`` row is written.
    """
    state = session.get(KEY)
    if not state:
        raise deny("no share session")
    share = db.session.get(Share, state["id"])
    reason = _why_ended(share, state)
    if reason:
        end()
        refuse(share, reason)
        raise TokenInvalid(ended_message(share))
    state["seen"] = clock.now().isoformat()
    session.modified = True
    return ShareSession(share, bool(state["verified"]))


def _why_ended(share: Share | None, state: dict) -> str | None:
    if share is None:
        return "unknown"
    if not share.usable():
        return share.status()
    if share.session_version != state["ver"]:
        return "session ended"
    now, config = clock.now(), current_app.config
    if now - _parse(state["seen"]) > config["SESSION_IDLE_TIMEOUT"]:
        return "timed out"
    if now - _parse(state["at"]) > config["SESSION_ABSOLUTE_TIMEOUT"]:
        return "timed out"
    return None


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)
