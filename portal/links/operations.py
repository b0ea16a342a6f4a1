"""Issue, redeem and revoke viewing links; open and check viewer sessions."""

from __future__ import annotations

from sqlalchemy import update

from portal import clock
from portal.cases.models import Case
from portal.extensions import db
from portal.links.models import ViewerSession, ViewingLink


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
