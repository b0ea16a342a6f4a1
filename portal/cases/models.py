"""A second-opinion case and what hangs off it: studies, attachments, offers, timeline.

The ``number`` is the case's public name (in URLs, messages and the PDF): six
random characters with no patient data in them. Subject fields hold the
patient's identity and never leave the portal's own pages.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal import clock
from portal.cases.states import OfferStatus, State, Subspecialty, Urgency
from portal.database import UTCDateTime
from portal.extensions import db

NUMBER_LENGTH = 6


class Case(db.Model):
    __tablename__ = "cases"
    __table_args__ = (Index("ix_cases_state_due", "state", "sla_due_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(12), unique=True)
    state: Mapped[str] = mapped_column(String(24), default=State.SUBMITTED)
    urgency: Mapped[str] = mapped_column(String(12), default=Urgency.ROUTINE)
    subspecialty: Mapped[str] = mapped_column(String(20), default=Subspecialty.GENERAL)
    requester_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    referring_physician_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    overreader_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)

    subject_name: Mapped[str] = mapped_column(String(200))
    subject_birth_date: Mapped[date | None] = mapped_column(Date)
    subject_email: Mapped[str] = mapped_column(String(254), default="")
    subject_phone: Mapped[str] = mapped_column(String(32), default="")
    notify_phone: Mapped[str] = mapped_column(String(32), default="")
    sms_opt_in: Mapped[bool] = mapped_column(default=False)

    clinical_question: Mapped[str] = mapped_column(Text)
    history: Mapped[str] = mapped_column(Text, default="")
    deidentify: Mapped[bool] = mapped_column(default=False)
    consent_text: Mapped[str | None] = mapped_column(Text)
    consent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    #: When the SLA clock last started: submission, or the admin's reopening.
    sla_started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    sla_due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    #: Bumped by every move; SLA timers carry it so a stale timer does nothing.
    version: Mapped[int] = mapped_column(default=1)

    requester = relationship("User", foreign_keys=[requester_id])
    referring_physician = relationship("User", foreign_keys=[referring_physician_id])
    assignee = relationship("User", foreign_keys=[assignee_id])
    overreader = relationship("User", foreign_keys=[overreader_id])
    studies: Mapped[list[CaseStudy]] = relationship(
        back_populates="case", order_by="CaseStudy.study_id", cascade="all, delete-orphan"
    )
    attachments: Mapped[list[CaseAttachment]] = relationship(
        back_populates="case", order_by="CaseAttachment.id"
    )
    offers: Mapped[list[Offer]] = relationship(back_populates="case", order_by="Offer.id")
    events: Mapped[list[CaseEvent]] = relationship(back_populates="case", order_by="CaseEvent.id")

    @property
    def state_enum(self) -> State:
        return State(self.state)

    @property
    def urgency_enum(self) -> Urgency:
        return Urgency(self.urgency)

    @property
    def subspecialty_enum(self) -> Subspecialty:
        return Subspecialty(self.subspecialty)

    def open_offers(self, purpose: str | None = None) -> list[Offer]:
        return [
            offer
            for offer in self.offers
            if offer.status == OfferStatus.OPEN and (purpose is None or offer.purpose == purpose)
        ]

    def __repr__(self) -> str:
        return f"<Case {self.number} {self.state}>"


class CaseStudy(db.Model):
    """A study attached to a case; ``reading_study_id`` is its de-identified copy, if any."""

    __tablename__ = "case_studies"

    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), primary_key=True, index=True)
    reading_study_id: Mapped[int | None] = mapped_column(ForeignKey("studies.id"), index=True)

    case: Mapped[Case] = relationship(back_populates="studies")
    study = relationship("Study", foreign_keys=[study_id])
    reading_study = relationship("Study", foreign_keys=[reading_study_id])

    @property
    def study_for_reading(self):
        """The study the radiologist reads: the de-identified copy when there is one."""
        return self.reading_study or self.study


class CaseAttachment(db.Model):
    """A prior report (PDF or image) stored in the blob store under a random key."""

    __tablename__ = "case_attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    filename: Mapped[str] = mapped_column(String(200))
    content_type: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(200), unique=True)
    uploaded_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

    case: Mapped[Case] = relationship(back_populates="attachments")


class Offer(db.Model):
    """The case offered to one radiologist, to read or to overread."""

    __tablename__ = "case_offers"
    __table_args__ = (Index("ix_case_offers_radiologist_status", "radiologist_id", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    radiologist_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    purpose: Mapped[str] = mapped_column(String(12), default="read")
    status: Mapped[str] = mapped_column(String(12), default=OfferStatus.OPEN)
    offered_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    offered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    case: Mapped[Case] = relationship(back_populates="offers")
    radiologist = relationship("User", foreign_keys=[radiologist_id])


class CaseEvent(db.Model):
    """One move of the case, for the timeline (the audit log has the full record)."""

    __tablename__ = "case_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    action: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(24))
    to_state: Mapped[str] = mapped_column(String(24))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    note: Mapped[str] = mapped_column(String(500), default="")

    case: Mapped[Case] = relationship(back_populates="events")
    actor = relationship("User", foreign_keys=[actor_id])
