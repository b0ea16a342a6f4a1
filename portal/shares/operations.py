"""Share a case by email, open the link, prove the address with a one-time code, revoke.

Every function adds its audit rows and outbox messages to the current
transaction and the caller commits, except :func:`refuse`, whose row must
outlive the failing request. Audit rows name the share (``share:<id>``) and the
case, never the patient.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from flask import current_app
from sqlalchemy import select

from portal import clock
from portal.audit.operations import record
from portal.auth.models import Role, User
from portal.auth.operations import normalise_email
from portal.cases.models import Case
from portal.errors import InvalidInput, TokenInvalid
from portal.extensions import db
from portal.notifications.operations import enqueue
from portal.opaque import hash_token, new_token
from portal.shares.models import Share

CODE_LIFETIME = timedelta(minutes=10)
MAX_CODE_ATTEMPTS = 5


def may_share(user: User, case: Case) -> bool:
    """Tell whether ``user`` may share ``case``: its referring physician, or an admin."""
    if not getattr(user, "is_authenticated", False):
        return False
    return user.role == Role.ADMIN or (
        case.referring_physician_id is not None and user.id == case.referring_physician_id
    )


def link_url(raw: str) -> str:
    return f"{current_app.config['BASE_URL']}/shared/{raw}"


def create_share(sharer: User, case: Case, email: str, days: int | None = None) -> Share:
    """Share ``case`` with ``email`` for ``days`` (default ``SHARE_DAYS``) and email the link.

    :raise InvalidInput: ``days`` is outside 1..``SHARE_DAYS``.
    """
    most = current_app.config["SHARE_DAYS"]
    days = most if days is None else days
    if not 1 <= days <= most:
        raise InvalidInput(f"A share lasts between 1 and {most} days.")
    raw, digest = new_token()
    now = clock.now()
    share = Share(
        case_id=case.id,
        sharer_id=sharer.id,
        email=normalise_email(email),
        token_hash=digest,
        created_at=now,
        expires_at=now + timedelta(days=days),
    )
    db.session.add(share)
    db.session.flush()
    enqueue(
        channel="email",
        recipient=share.email,
        kind="share.link",
        subject=f"{sharer.name} shared an Overread case with you",
        body=(
            f"{sharer.name} shared Overread case {case.number} with you: its images and "
            "report.\n\n"
            f"Open it here (the link works until {share.expires_at:%Y-%m-%d %H:%M} UTC; "
            "each time you open it, we email a one-time code to this address):\n"
            f"{link_url(raw)}\n\nIf you did not expect this, ignore this message."
        ),
        idempotency_key=f"share:{share.id}",
        case_id=case.id,
    )
    record(
        "share.created", sharer, case_id=case.id, target=share.target, email=share.email, days=days
    )
    return share


def revoke_share(actor: User, share: Share) -> None:
    """Withdraw ``share``; an open recipient session ends on its next request."""
    if share.revoked_at is not None:
        return
    share.revoked_at = clock.now()
    share.session_version += 1
    share.otp_hash = None
    record("share.revoked", actor, case_id=share.case_id, target=share.target)


def open_link(raw: str) -> Share:
    """Return the usable share of the link code ``raw``.

    :raise TokenInvalid: unknown, expired or revoked; a ``share.refused`` row is committed.
    """
    share = db.session.scalars(select(Share).where(Share.token_hash == hash_token(raw))).first()
    if share is not None and share.usable():
        record("share.opened", case_id=share.case_id, target=share.target)
        return share
    refuse(share, "unknown" if share is None else share.status())
    raise TokenInvalid(ended_message(share))


def refuse(share: Share | None, reason: str) -> None:
    """Commit a ``share.refused`` audit row (the request itself is about to fail)."""
    record(
        "share.refused",
        case_id=share.case_id if share else None,
        target=share.target if share else None,
        reason=reason,
    )
    db.session.commit()


def ended_message(share: Share | None) -> str:
    """Say why a share link or session no longer opens the case."""
    if share is None:
        return "This link is not valid. Check that you copied all of it from the email."
    if share.revoked_at is not None:
        return "The person who shared this case has withdrawn the share."
    if not share.usable():
        return "This share has expired. Ask the person who shared it for a new link."
    return "This session has ended. Open the link in your email again."


def send_code(share: Share) -> None:
    """Email a fresh 6-digit code to the share's address; it replaces any earlier one."""
    code = f"{secrets.randbelow(10**6):06d}"
    share.otp_hash = _code_digest(share, code)
    share.otp_expires_at = clock.now() + CODE_LIFETIME
    share.otp_attempts = 0
    minutes = int(CODE_LIFETIME.total_seconds() // 60)
    enqueue(
        channel="email",
        recipient=share.email,
        kind="share.code",
        subject="Your Overread code",
        body=(
            f"Your code to open shared Overread case {share.case.number} is {code}.\n\n"
            f"It works once, for {minutes} minutes. If you did not ask for it, ignore "
            "this message."
        ),
        idempotency_key=f"share-code:{share.id}:{secrets.token_hex(8)}",
        case_id=share.case_id,
    )
    record("share.code_sent", case_id=share.case_id, target=share.target)


def check_code(share: Share, code: str) -> None:
    """Accept the emailed code once; count wrong ones and void the code after the fifth.

    :raise InvalidInput: no live code, or the code is wrong (the caller commits the count).
    """
    if not share.code_live():
        record("share.code_failed", case_id=share.case_id, target=share.target, reason="no code")
        raise InvalidInput("This code is no longer valid. Ask for a new one.")
    if not hmac.compare_digest(share.otp_hash, _code_digest(share, code)):
        _count_wrong_code(share)
    share.otp_hash = share.otp_expires_at = None
    share.otp_attempts = 0
    share.verified_at = clock.now()
    record("share.verified", case_id=share.case_id, target=share.target)


def _count_wrong_code(share: Share) -> None:
    share.otp_attempts += 1
    left = MAX_CODE_ATTEMPTS - share.otp_attempts
    if left <= 0:
        share.otp_hash = share.otp_expires_at = None
    record(
        "share.code_failed",
        case_id=share.case_id,
        target=share.target,
        reason="wrong code",
        attempts=share.otp_attempts,
        voided=left <= 0,
    )
    if left <= 0:
        raise InvalidInput("Too many wrong codes: this code no longer works. Ask for a new one.")
    raise InvalidInput(f"That code is not right. {left} {'try' if left == 1 else 'tries'} left.")


def _code_digest(share: Share, code: str) -> str:
    """Keyed hash of a code: six digits are too few for a plain hash to hide them."""
    key = current_app.config["SECRET_KEY"].encode()
    message = f"{share.id}:{''.join(code.split())}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def record_access(action: str, share: Share, **details) -> None:
    """Audit what the recipient looked at or downloaded (``share.viewed`` and the like)."""
    record(action, case_id=share.case_id, target=share.target, **details)
