"""Bearer tokens for DICOMweb and other API clients; stored as SHA-256 only."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from portal import clock
from portal.audit.operations import record
from portal.auth.models import ApiToken, User
from portal.errors import NotFound
from portal.extensions import db
from portal.opaque import hash_token, new_token

TOKEN_PREFIX = "ovr_"  # noqa: S105 - a label, not a secret
LAST_USED_RESOLUTION = timedelta(minutes=1)


def issue_api_token(user: User, name: str = "API token") -> str:
    """Create a token for ``user`` and return it; it is shown this once only."""
    raw, digest = new_token(TOKEN_PREFIX)
    token = ApiToken(user_id=user.id, name=name[:100], token_hash=digest, prefix=raw[:10])
    db.session.add(token)
    db.session.flush()
    record("api_token.issued", user, target=f"api_token:{token.id}")
    return raw


def revoke_api_token(actor: User, token_id: int) -> None:
    """Revoke a token; its owner or an admin may do it."""
    token = db.session.get(ApiToken, token_id)
    if token is None or (token.user_id != actor.id and actor.role != "admin"):
        raise NotFound("No such token.")
    if token.revoked_at is None:
        token.revoked_at = clock.now()
        record("api_token.revoked", actor, target=f"api_token:{token.id}")


def user_for_api_token(raw: str) -> User | None:
    """Return the active user a live token belongs to, or ``None``."""
    if not raw.startswith(TOKEN_PREFIX):
        return None
    token = db.session.scalars(
        select(ApiToken).where(ApiToken.token_hash == hash_token(raw))
    ).first()
    if token is None or token.revoked_at is not None or not token.user.active:
        return None
    now = clock.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        token.last_used_at = now  # a write per minute at most, not one per API call
    return token.user
