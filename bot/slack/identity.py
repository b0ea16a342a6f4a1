"""Who is asking: a Slack user mapped to an Overread account through its paging profile."""

from __future__ import annotations

from sqlalchemy import select

from portal.audit.operations import record_now
from portal.auth.models import User
from portal.extensions import db
from portal.oncall.models import PagingProfile

UNKNOWN_USER = (
    "Your Slack account is not linked to an Overread radiologist account. "
    "Ask a coordinator to add your Slack member ID to your paging profile."
)


def account_for(slack_user_id: str) -> User | None:
    """Return the active account whose paging profile names ``slack_user_id``, if any."""
    profile = db.session.scalars(
        select(PagingProfile).where(PagingProfile.slack_user_id == slack_user_id)
    ).first()
    user = profile.user if profile is not None else None
    return user if user is not None and user.active else None


def record_refusal(slack_user_id: str, user: User | None, reason: str, **details: str) -> None:
    """Audit a refused Slack request, in a transaction of its own."""
    record_now("slack.refused", user, target=f"slack:{slack_user_id}", reason=reason, **details)
