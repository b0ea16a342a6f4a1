"""Bearer tokens for DICOMweb and other API clients; stored as SHA-256 only."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import joinedload

from portal import clock
from portal.audit.operations import record
from portal.auth.models import ApiToken, User
from portal.database import begin_read_only, commit_keeping_loaded
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
    """Return the active user a live token belongs to, or ``None``; note its use in the session."""
    token = _live_token(raw)
    if token is None:
        return None
    if _use_is_due(token):
        token.last_used_at = clock.now()
    return token.user


def authenticate_api_token(raw: str) -> User | None:
    """Return the active user a live token belongs to, or ``None``, and end the transaction.

    The look-up only reads: on SQLite it takes no write lock, so API calls do
    not queue behind each other or behind an ingest for it. The token's
    ``last_used_at`` is then written, at most once a minute, in a short
    transaction of its own. With a transaction open already (a browser
    session was loaded first), the look-up is :func:`user_for_api_token`'s.
    """
    if db.session().in_transaction():
        user = user_for_api_token(raw)
        db.session.commit()
        return user
    begin_read_only()
    token = _live_token(raw)
    user = None if token is None else token.user
    due = token is not None and _use_is_due(token)
    token_id = None if token is None else token.id
    commit_keeping_loaded()  # nothing was written: this ends the read
    if due:
        db.session.execute(
            update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=clock.now())
        )
        db.session.commit()
    return user


# Built once: every API request runs it.
_TOKEN_BY_HASH = (
    select(ApiToken)
    .options(joinedload(ApiToken.user))  # one query, not two
    .where(ApiToken.token_hash == bindparam("digest"))
)


def _live_token(raw: str) -> ApiToken | None:
    """Return the unrevoked token of an active user that ``raw`` is, or ``None``."""
    if not raw.startswith(TOKEN_PREFIX):
        return None
    token = db.session.scalars(_TOKEN_BY_HASH, {"digest": hash_token(raw)}).first()
    if token is None or token.revoked_at is not None or not token.user.active:
        return None
    return token


def _use_is_due(token: ApiToken) -> bool:
    """Tell whether ``last_used_at`` is older than its resolution: a write per minute at most."""
    last = token.last_used_at
    return last is None or clock.now() - last > LAST_USED_RESOLUTION
