"""Issue, redeem and revoke viewing links (viewer sessions: :mod:`portal.links.sessions`).

A link's code and a viewer session's token are 256 random bits, stored only as
their SHA-256 and never logged or audited: audit rows name ``link:<id>`` and
``viewer:<id>``. A link is bound to one radiologist and one case, works once and
for at most 15 minutes, and is redeemed with the radiologist's viewer PIN or TOTP
code into a viewer session for that case alone. Both die when the radiologist no
longer holds the case (reassigned, closed, cancelled) or the account is deactivated.

Audit rows name as actor whoever is signed in, else the radiologist the link
was sent to (as ``login.failed`` names the account tried). Refusals are
committed before they are raised, so they outlive the request's rollback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, select, update

from portal import clock
from portal.audit.models import AuditEvent
from portal.audit.operations import record
from portal.auth import operations as auth_operations
from portal.auth.models import User
from portal.cases.models import Case
from portal.cases.states import State
from portal.errors import AuthenticationFailed, Conflict, NotFound, OverreadError, TokenInvalid
from portal.extensions import db
from portal.links.models import ViewerSession, ViewingLink
from portal.links.pin import pin_matches
from portal.notifications.models import Notification
from portal.oncall.models import PagingProfile
from portal.opaque import hash_token, new_token

MAX_LINK_LIFETIME = timedelta(minutes=15)
MAX_WRONG_FACTORS = 5  # wrong PINs or codes on one link before it is withdrawn
_ENDED_STATES = (State.CLOSED, State.CANCELLED)

#: reason -> (HTTP status, what the page says, whether asking for a new link helps)
_LINK_REFUSALS = {
    "unknown": (404, "This link is not valid. Check that the whole link was opened.", True),
    "someone else": (403, "This link was sent to another radiologist; it is not yours.", False),
    "used": (410, "This link has already been used: each link opens the case once.", True),
    "revoked": (
        410,
        "This link was withdrawn: a newer one was sent, or the case was reassigned or closed.",
        True,
    ),
    "expired": (410, "This link has expired: links work for a few minutes only.", True),
    "inactive": (403, "The account this link was sent to is deactivated.", False),
    "not held": (410, "This link no longer opens the case: it was reassigned or closed.", False),
    "too many tries": (
        410,
        "A wrong PIN or code was entered too many times, so this link is withdrawn.",
        True,
    ),
}


class LinkRefused(TokenInvalid):
    """A viewing link that does not open its case; ``reason`` is what the audit row says."""

    def __init__(self, reason: str, case_number: str | None = None) -> None:
        status, message, self.new_link_helps = _LINK_REFUSALS[reason]
        super().__init__(message)
        self.reason, self.status_code, self.case_number = reason, status, case_number


@dataclass(frozen=True)
class RequestMeta:
    """Who asks, as the web layer knows it: the signed-in account (if any) and the browser."""

    signed_in: User | None = None
    user_agent: str = ""


def link_url(raw: str) -> str:
    return f"{current_app.config['BASE_URL']}/l/{raw}"


def holding_problem(user: User, case: Case) -> str | None:
    """Why ``user`` may not read ``case`` through a link now, or ``None`` when they may."""
    if not user.active:
        return "inactive"
    held = user.id in (case.assignee_id, case.overreader_id)
    return None if held and case.state not in _ENDED_STATES else "not held"


# --- issuing -------------------------------------------------------------------------
def issue_link(user: User, case: Case, via: str) -> str:
    """Make a link for ``user`` to open ``case``; their older unused ones are withdrawn.

    The caller commits.

    :param via: where the link goes: ``slack``, ``sms`` or ``web``.
    :return: the raw code (only its hash is stored).
    :raise Conflict: ``user`` does not hold the case now, or is deactivated.
    """
    if holding_problem(user, case):
        raise Conflict(f"Case {case.number} is not held by this radiologist; no link is made.")
    now = clock.now()
    db.session.execute(
        update(ViewingLink)
        .where(
            ViewingLink.user_id == user.id,
            ViewingLink.case_id == case.id,
            ViewingLink.used_at.is_(None),
            ViewingLink.revoked_at.is_(None),
        )
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    raw, digest = new_token()
    lifetime = min(current_app.config["LINK_LIFETIME"], MAX_LINK_LIFETIME)
    link = ViewingLink(
        code_hash=digest,
        user_id=user.id,
        case_id=case.id,
        issued_via=via,
        created_at=now,
        expires_at=now + lifetime,
    )
    db.session.add(link)
    db.session.flush()
    record("link.issued", user, case_id=case.id, target=f"link:{link.id}", via=via)
    return raw


def link_for_notification(row: Notification) -> str:
    """Issue the link an outbox row of kind ``case.link`` carries, and commit it.

    :return: the full URL, ``BASE_URL/l/<code>``.
    :raise NotFound: the row's user or case is gone.
    :raise Conflict: the user no longer holds the case (the dispatcher gives the row up).
    """
    user = db.session.get(User, row.user_id) if row.user_id else None
    case = db.session.get(Case, row.case_id) if row.case_id else None
    if user is None or case is None:
        raise NotFound("The radiologist or the case of this link is gone.")
    raw = issue_link(user, case, row.channel)
    db.session.commit()
    return link_url(raw)


def revoke_for_case(case: Case, reason: str) -> None:
    """End every unused link and open viewer session of ``case``; the caller commits."""
    now = clock.now()
    for model, open_rows in (
        (ViewingLink, ViewingLink.used_at.is_(None)),
        (ViewerSession, ViewerSession.expires_at > now),
    ):
        db.session.execute(
            update(model)
            .where(model.case_id == case.id, model.revoked_at.is_(None), open_rows)
            .values(revoked_at=now)
            .execution_options(synchronize_session=False)
        )


# --- redeeming -----------------------------------------------------------------------
@contextmanager
def _kept_when_refused() -> Iterator[None]:
    """Commit the audit rows and failure counts written so far when a refusal leaves."""
    try:
        yield
    except OverreadError:
        db.session.commit()
        raise


def _refuse(reason: str, link: ViewingLink | None, meta: RequestMeta) -> LinkRefused:
    """Audit a refused link (uncommitted) and return the error to raise."""
    actor = meta.signed_in or (link.user if link else None)
    record(
        "link.refused",
        actor,
        case_id=link.case_id if link else None,
        target=f"link:{link.id}" if link else None,
        reason=reason,
    )
    return LinkRefused(reason, link.case.number if link else None)


def _why_refused(link: ViewingLink | None, meta: RequestMeta) -> str | None:
    if link is None:
        return "unknown"
    if meta.signed_in is not None and meta.signed_in.id != link.user_id:
        return "someone else"
    if link.used_at is not None:
        return "used"
    if link.revoked_at is not None:
        return "revoked"
    if link.expires_at <= clock.now():
        return "expired"
    return holding_problem(link.user, link.case)


def find_live_link(raw_code: str, meta: RequestMeta) -> ViewingLink:
    """Return the link for ``raw_code`` if it may still be redeemed; nothing is spent.

    :raise LinkRefused: unknown, someone else's, used, withdrawn, expired, or the
        case no longer held; the ``link.refused`` row is committed.
    """
    link = None
    if 20 <= len(raw_code) <= 100:
        link = db.session.scalars(
            select(ViewingLink).where(ViewingLink.code_hash == hash_token(raw_code))
        ).first()
    reason = _why_refused(link, meta)
    if reason:
        with _kept_when_refused():
            raise _refuse(reason, link, meta)
    return link


def open_link(raw_code: str, meta: RequestMeta) -> ViewingLink:
    """Look a link up to ask for the PIN (a preview bot may be asking): audit, don't spend.

    The caller commits. :raise LinkRefused: as :func:`find_live_link`.
    """
    link = find_live_link(raw_code, meta)
    record(
        "link.opened",
        meta.signed_in or link.user,
        case_id=link.case_id,
        target=f"link:{link.id}",
        agent=meta.user_agent[:200],
    )
    return link


def redeem(raw_code: str, pin_or_totp: str, meta: RequestMeta) -> str:
    """Spend a link with its radiologist's viewer PIN or TOTP code; open a viewer session.

    Commits, whatever the outcome. Of two redemptions racing, one wins.

    :return: the raw viewer-session token (for the cookie; only its hash is stored).
    :raise LinkRefused: as :func:`find_live_link`, or this wrong factor was the
        link's last allowed try (the link is withdrawn).
    :raise AuthenticationFailed: a wrong PIN or code (counted toward the account's
        lockout), or the account is locked.
    """
    with _kept_when_refused():
        link = find_live_link(raw_code, meta)
        factor = _check_factor(link, meta, pin_or_totp)
        now = clock.now()
        if not _claim(link, now):
            db.session.refresh(link)
            raise _refuse(_why_refused(link, meta) or "used", link, meta)
    raw, digest = new_token()
    session = ViewerSession(
        token_hash=digest,
        user_id=link.user_id,
        case_id=link.case_id,
        link_id=link.id,
        created_at=now,
        last_seen_at=now,
        expires_at=now + current_app.config["VIEWER_ABSOLUTE_TIMEOUT"],
    )
    db.session.add(session)
    db.session.flush()
    record(
        "link.redeemed",
        link.user,
        case_id=link.case_id,
        target=f"link:{link.id}",
        factor=factor,
        session=f"viewer:{session.id}",
        agent=meta.user_agent[:200],
    )
    db.session.commit()
    return raw


def _claim(link: ViewingLink, now: datetime) -> bool:
    """Mark the link used unless another request did first (one UPDATE decides)."""
    result = db.session.execute(
        update(ViewingLink)
        .where(
            ViewingLink.id == link.id,
            ViewingLink.used_at.is_(None),
            ViewingLink.revoked_at.is_(None),
            ViewingLink.expires_at > now,
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def _check_factor(link: ViewingLink, meta: RequestMeta, entered: str) -> str:
    """Return ``"pin"`` or ``"totp"``, whichever ``entered`` is.

    A wrong one counts toward the account's lockout, like a wrong sign-in.
    """
    user, now = link.user, clock.now()
    entered = "".join(entered.split())
    auth_operations.refuse_if_locked(user, now)
    if pin_matches(db.session.get(PagingProfile, user.id), entered):
        return "pin"
    if user.totp_enrolled:
        try:
            auth_operations.check_second_factor(user, entered)
            return "totp"
        except AuthenticationFailed:
            pass  # counted toward the lockout by check_second_factor
    else:
        auth_operations.count_failure(user, now, "wrong viewer PIN")
    raise _wrong_factor(link, meta)


def _wrong_factor(link: ViewingLink, meta: RequestMeta) -> OverreadError:
    """Audit a wrong PIN or code on ``link``; withdraw the link at the last allowed try."""
    target = f"link:{link.id}"
    record("link.factor_failed", meta.signed_in or link.user, case_id=link.case_id, target=target)
    tries = db.session.scalar(
        select(func.count())
        .select_from(AuditEvent)
        .where(AuditEvent.action == "link.factor_failed", AuditEvent.target == target)
    )
    if tries < MAX_WRONG_FACTORS:
        left = MAX_WRONG_FACTORS - tries
        return AuthenticationFailed(
            "That is neither your viewer PIN nor a current code from your authenticator app. "
            f"{left} {'try' if left == 1 else 'tries'} left on this link."
        )
    link.revoked_at = clock.now()
    record("link.revoked", link.user, case_id=link.case_id, target=target, reason="too many tries")
    return _refuse("too many tries", link, meta)
