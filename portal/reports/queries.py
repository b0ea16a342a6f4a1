"""Find a case's signed reports and a writer's open draft."""

from __future__ import annotations

from sqlalchemy import select

from portal.auth.models import User
from portal.cases.models import Case
from portal.extensions import db
from portal.reports.models import Kind, Report


def signed_reports(case: Case) -> list[Report]:
    """Return the signed report, addenda and overreads of ``case``, in signing order."""
    return db.session.scalars(
        select(Report)
        .where(Report.case_id == case.id, Report.signed_at.is_not(None))
        .order_by(Report.signed_at, Report.id)
    ).all()


def signed_report(case: Case) -> Report | None:
    """Return the case's signed report (the read itself), if there is one yet."""
    return db.session.scalars(
        select(Report).where(
            Report.case_id == case.id,
            Report.kind == Kind.REPORT,
            Report.signed_at.is_not(None),
        )
    ).first()


def draft_of(case: Case, user: User, kind: Kind) -> Report | None:
    """Return ``user``'s unsigned ``kind`` draft on ``case``, if they started one."""
    return db.session.scalars(
        select(Report)
        .where(
            Report.case_id == case.id,
            Report.kind == kind,
            Report.author_id == user.id,
            Report.signed_at.is_(None),
        )
        .order_by(Report.id.desc())
    ).first()
