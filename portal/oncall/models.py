"""Paging profiles, on-call schedules (layers, rotations, overrides) and escalation policies."""

from __future__ import annotations

import enum
from datetime import date, datetime, time

from sqlalchemy import Date, ForeignKey, String, Time, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal import clock
from portal.auth.models import User
from portal.database import UTCDateTime
from portal.extensions import db


class PageVia(enum.StrEnum):
    SLACK = "slack"
    SMS = "sms"
    BOTH = "both"

    @property
    def label(self) -> str:
        return {"slack": "Slack", "sms": "SMS", "both": "Slack and SMS"}[self.value]


class PagingProfile(db.Model):
    """How and when to reach one radiologist (or admin) by Slack and SMS.

    ``subspecialties`` holds :class:`portal.cases.states.Subspecialty` values
    separated by commas. ``mobile`` is E.164 and counts only once verified.
    Quiet hours are in the profile's own time zone; STAT pages ignore them.
    """

    __tablename__ = "paging_profiles"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    subspecialties: Mapped[str] = mapped_column(String(200), default="general")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    slack_user_id: Mapped[str | None] = mapped_column(String(32), unique=True)
    mobile: Mapped[str | None] = mapped_column(String(20), unique=True)
    mobile_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    mobile_code_hash: Mapped[str | None] = mapped_column(String(64))
    mobile_code_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    mobile_code_attempts: Mapped[int] = mapped_column(default=0)
    sms_stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    page_via: Mapped[str] = mapped_column(String(10), default=PageVia.BOTH)
    quiet_start: Mapped[time | None] = mapped_column(Time)
    quiet_end: Mapped[time | None] = mapped_column(Time)
    pin_hash: Mapped[str | None] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

    user: Mapped[User] = relationship()

    @property
    def subspecialty_list(self) -> list[str]:
        return [value for value in self.subspecialties.split(",") if value]

    @property
    def sms_number(self) -> str | None:
        """The number pages may go to: verified and not stopped by the radiologist."""
        verified = self.mobile and self.mobile_verified_at is not None
        return self.mobile if verified and self.sms_stopped_at is None else None


class Schedule(db.Model):
    """Who is on call for one subspecialty; layers are stacked by ``position``."""

    __tablename__ = "schedules"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    subspecialty: Mapped[str] = mapped_column(String(30), index=True)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    feed_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

    layers: Mapped[list[Layer]] = relationship(
        back_populates="schedule", order_by="Layer.position", cascade="all, delete-orphan"
    )
    overrides: Mapped[list[Override]] = relationship(
        back_populates="schedule", order_by="Override.starts_at", cascade="all, delete-orphan"
    )


class Layer(db.Model):
    """A rotation: members take turns of ``rotation_days``, handing off at ``handoff_time``.

    Times are in the schedule's time zone. ``window_start``/``window_end``
    restrict the layer to part of each day (follow-the-sun); a window may
    cross midnight. Without a window the layer covers the whole day.
    """

    __tablename__ = "schedule_layers"

    id: Mapped[int] = mapped_column(primary_key=True)
    schedule_id: Mapped[int] = mapped_column(ForeignKey("schedules.id"), index=True)
    position: Mapped[int] = mapped_column(default=1)  # 1 = primary, 2 = secondary, ...
    name: Mapped[str] = mapped_column(String(100), default="")
    rotation_days: Mapped[int] = mapped_column(default=7)
    starts_on: Mapped[date] = mapped_column(Date)
    handoff_time: Mapped[time] = mapped_column(Time, default=time(8, 0))
    window_start: Mapped[time | None] = mapped_column(Time)
    window_end: Mapped[time | None] = mapped_column(Time)

    schedule: Mapped[Schedule] = relationship(back_populates="layers")
    members: Mapped[list[LayerMember]] = relationship(
        order_by="LayerMember.position", cascade="all, delete-orphan"
    )


class LayerMember(db.Model):
    __tablename__ = "schedule_layer_members"
    __table_args__ = (UniqueConstraint("layer_id", "position", name="uq_layer_member_position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    layer_id: Mapped[int] = mapped_column(ForeignKey("schedule_layers.id"), index=True)
    position: Mapped[int]
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))

    user: Mapped[User] = relationship()


class Override(db.Model):
    """A one-off change: ``user`` covers ``[starts_at, ends_at)``.

    With ``replaces_user_id`` it is a swap (that person's shifts in the span
    go to ``user``); without, ``user`` is added to the top of the schedule
    (an ad hoc specialist for a day).
    """

    __tablename__ = "schedule_overrides"

    id: Mapped[int] = mapped_column(primary_key=True)
    schedule_id: Mapped[int] = mapped_column(ForeignKey("schedules.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    replaces_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    note: Mapped[str] = mapped_column(String(200), default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

    schedule: Mapped[Schedule] = relationship(back_populates="overrides")
    user: Mapped[User] = relationship(foreign_keys=[user_id])
    replaces: Mapped[User | None] = relationship(foreign_keys=[replaces_user_id])


class EscalationPolicy(db.Model):
    """How one urgency is paged: each step waits ``wait_minutes`` for an answer.

    A round pages the schedule's layers in order (primary, then secondary, ...),
    then, with ``page_pool``, every radiologist of the subspecialty. Rounds
    repeat up to ``rounds`` times; then the case goes ``unassigned`` and the
    admins are paged.
    """

    __tablename__ = "escalation_policies"

    id: Mapped[int] = mapped_column(primary_key=True)
    urgency: Mapped[str] = mapped_column(String(20), unique=True)
    wait_minutes: Mapped[int]
    rounds: Mapped[int]
    page_pool: Mapped[bool] = mapped_column(default=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
