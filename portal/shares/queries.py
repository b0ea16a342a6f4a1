"""Read shares and what their recipients did, from the audit log, for the sharer's case page."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select

from portal.audit.models import AuditEvent
from portal.cases.models import Case, CaseStudy
from portal.extensions import db
from portal.shares.models import Share

#: What each audited share action means to the person who shared.
ACTIVITY_LABELS = {
    "share.created": "Shared",
    "share.opened": "Link opened",
    "share.code_sent": "Code sent",
    "share.code_failed": "Wrong or expired code",
    "share.verified": "Code accepted",
    "share.viewed": "Case viewed",
    "share.report_downloaded": "Report PDF downloaded",
    "share.study_downloaded": "Study downloaded",
    "share.refused": "Refused (share ended)",
    "share.revoked": "Revoked",
}


@dataclass
class Activity:
    at: datetime
    action: str

    @property
    def label(self) -> str:
        return ACTIVITY_LABELS.get(self.action, self.action)


@dataclass
class ShareListing:
    share: Share
    status: str
    activity: list[Activity] = field(default_factory=list)


def shares_of_case(case: Case) -> list[ShareListing]:
    """Return the case's shares, newest first, each with its audited activity in order."""
    shares = db.session.scalars(
        select(Share).where(Share.case_id == case.id).order_by(Share.id.desc())
    ).all()
    listings = {share.target: ShareListing(share, share.status()) for share in shares}
    if not listings:
        return []
    events = db.session.execute(
        select(AuditEvent.target, AuditEvent.created_at, AuditEvent.action)
        .where(AuditEvent.case_id == case.id, AuditEvent.target.in_(list(listings)))
        .order_by(AuditEvent.seq)
    )
    for target, at, action in events:
        listings[target].activity.append(Activity(at, action))
    return list(listings.values())


def case_has_study(case: Case, study_id: int) -> bool:
    """Tell whether ``study_id`` is one of the studies submitted with ``case``."""
    return (
        db.session.scalar(
            select(CaseStudy.study_id).where(
                CaseStudy.case_id == case.id, CaseStudy.study_id == study_id
            )
        )
        is not None
    )
