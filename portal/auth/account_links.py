"""Single-use, expiring invite and password-reset links, sent through the outbox."""

from __future__ import annotations

from flask import current_app
from sqlalchemy import select

from portal import clock
from portal.audit.operations import record
from portal.auth.models import AccountLink, Role, User
from portal.auth.operations import create_user, find_user, normalise_email, set_password
from portal.errors import Conflict, TokenInvalid
from portal.extensions import db
from portal.notifications.operations import enqueue
from portal.opaque import hash_token, new_token


def _link_url(path: str, raw: str) -> str:
    return f"{current_app.config['BASE_URL']}/{path}/{raw}"


def create_invite(admin: User, email: str, role: Role | str) -> AccountLink:
    """Invite someone to join with ``role``; the link goes out by email."""
    email, role = normalise_email(email), Role(role)
    if find_user(email) is not None:
        raise Conflict("An account with this email already exists.")
    raw, digest = new_token()
    invite = AccountLink(
        purpose="invite",
        token_hash=digest,
        email=email,
        role=role.value,
        created_by_id=admin.id,
        expires_at=clock.now() + current_app.config["INVITE_LIFETIME"],
    )
    db.session.add(invite)
    db.session.flush()
    enqueue(
        channel="email",
        recipient=email,
        kind="account.invite",
        subject="You are invited to Overread",
        body=(
            f"{admin.name} invited you to Overread as a {role.value}.\n\n"
            f"Set your password here (the link works once, until "
            f"{invite.expires_at:%Y-%m-%d %H:%M} UTC):\n{_link_url('invite', raw)}\n"
        ),
        idempotency_key=f"invite:{invite.id}",
    )
    record("invite.created", admin, target=f"invite:{invite.id}", email=email, role=role.value)
    return invite


def find_live_link(purpose: str, raw: str) -> AccountLink:
    """Return the unused, unexpired link for ``raw``.

    :raise TokenInvalid: unknown, used, revoked or expired; an audit row is written.
    """
    link = db.session.scalars(
        select(AccountLink).where(
            AccountLink.token_hash == hash_token(raw), AccountLink.purpose == purpose
        )
    ).first()
    reason = _why_dead(link)
    if reason:
        record(f"{purpose}.refused", target=f"{purpose}:{link.id}" if link else None, reason=reason)
        db.session.commit()
        raise TokenInvalid(f"This {purpose} link {reason}. Ask for a new one.")
    return link


def _why_dead(link: AccountLink | None) -> str | None:
    if link is None:
        return "is not valid"
    if link.used_at is not None:
        return "has already been used"
    if link.revoked_at is not None:
        return "has been withdrawn"
    if link.expires_at <= clock.now():
        return "has expired"
    return None


def accept_invite(raw: str, name: str, password: str) -> User:
    """Create the invited account and spend the link."""
    invite = find_live_link("invite", raw)
    user = create_user(invite.email, name, invite.role, password, actor=invite.created_by)
    invite.used_at = clock.now()
    invite.user_id = user.id
    record("invite.accepted", user, target=f"invite:{invite.id}")
    return user


def request_password_reset(email: str) -> None:
    """Send a reset link if an active account has this email; say nothing either way."""
    user = find_user(email)
    if user is None or not user.active:
        record(
            "password.reset_requested", target=f"email:{normalise_email(email)[:200]}", known=False
        )
        return
    raw, digest = new_token()
    link = AccountLink(
        purpose="reset",
        token_hash=digest,
        email=user.email,
        user_id=user.id,
        expires_at=clock.now() + current_app.config["RESET_LIFETIME"],
    )
    db.session.add(link)
    db.session.flush()
    enqueue(
        channel="email",
        recipient=user.email,
        kind="account.password_reset",
        subject="Reset your Overread password",
        user_id=user.id,
        body=(
            "Someone asked to reset your Overread password. If it was you, choose a new "
            f"one here (the link works once, for "
            f"{int(current_app.config['RESET_LIFETIME'].total_seconds() // 60)} minutes):\n"
            f"{_link_url('reset', raw)}\n\nIf it was not you, ignore this message."
        ),
        idempotency_key=f"reset:{link.id}",
    )
    record("password.reset_requested", user, target=f"user:{user.id}", known=True)


def reset_password(raw: str, password: str) -> User:
    """Set a new password from a reset link, spend the link and end other sessions."""
    link = find_live_link("reset", raw)
    user = db.session.get(User, link.user_id)
    link.used_at = clock.now()
    set_password(user, password)  # also withdraws the user's other reset links
    record("password.reset", user, target=f"user:{user.id}")
    return user
