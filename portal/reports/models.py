"""A radiologist's written read of a case.

``kind`` is ``report`` (the read), ``addendum`` (added to a signed report) or
``overread`` (a second radiologist's review of a signed report). A row is a
draft until it is signed; signing stores the hash of its content, and from then
on the ORM refuses to change or delete it (see :func:`refuse_signed_changes`).
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, event
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from portal import clock
from portal.database import UTCDateTime
from portal.extensions import db


class Kind(enum.StrEnum):
    REPORT = "report"
    ADDENDUM = "addendum"
    OVERREAD = "overread"

    @property
    def label(self) -> str:
        return self.value.capitalize()


class Agreement(enum.StrEnum):
    AGREE = "agree"
    MINOR = "minor_discrepancy"
    MAJOR = "major_discrepancy"

    @property
    def label(self) -> str:
        return {"agree": "Agree", "minor_discrepancy": "Minor discrepancy"}.get(
            self.value, "Major discrepancy"
        )


class Report(db.Model):
    __tablename__ = "reports"
    __table_args__ = (Index("ix_reports_case_kind", "case_id", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    kind: Mapped[str] = mapped_column(String(12), default=Kind.REPORT)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("reports.id"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    findings: Mapped[str] = mapped_column(Text, default="")
    impression: Mapped[str] = mapped_column(Text, default="")
    recommendations: Mapped[str] = mapped_column(Text, default="")
    agreement: Mapped[str | None] = mapped_column(String(20))
    comments: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    signed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    signed_with: Mapped[str | None] = mapped_column(String(12))  # "password" or "totp"
    content_hash: Mapped[str | None] = mapped_column(String(64))

    case = relationship("Case")
    author = relationship("User", foreign_keys=[author_id])
    parent: Mapped[Report | None] = relationship(remote_side=[id])

    @property
    def signed(self) -> bool:
        return self.signed_at is not None

    @property
    def agreement_enum(self) -> Agreement | None:
        return Agreement(self.agreement) if self.agreement else None

    @property
    def kind_enum(self) -> Kind:
        return Kind(self.kind)


class SignedReportChanged(Exception):
    """Code tried to change or delete a signed report."""


@event.listens_for(Session, "before_flush")
def refuse_signed_changes(session: Session, flush_context, instances) -> None:
    """A report signed in an earlier flush is frozen: only addenda may follow it."""
    for obj in list(session.dirty) + list(session.deleted):
        if isinstance(obj, Report) and _was_signed(obj):
            state = db.inspect(obj)
            changed = any(attr.history.has_changes() for attr in state.attrs)
            if obj in session.deleted or changed:
                raise SignedReportChanged(f"report {obj.id} is signed and cannot be changed")


def _was_signed(report: Report) -> bool:
    history = db.inspect(report).attrs.signed_at.history
    return any(value is not None for value in (*history.unchanged, *history.deleted))
