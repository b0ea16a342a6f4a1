"""The SLA clock: when a case's report is due, and how the case stands against it."""

from __future__ import annotations

import enum
from datetime import datetime, timedelta

from flask import current_app

from portal import clock
from portal.cases.models import Case
from portal.cases.states import State, Urgency


class SlaStatus(enum.StrEnum):
    ON_TIME = "on time"
    AT_RISK = "at risk"
    LATE = "late"
    MET = "met"  # reported before the deadline
    MISSED = "missed"  # reported after it
    STOPPED = "stopped"  # cancelled: the clock no longer runs


def sla_window(urgency: Urgency | str) -> timedelta:
    """Return how long a case of ``urgency`` has from submission to a signed report."""
    return current_app.config["SLA_MINUTES"][Urgency(urgency)]


def due_at(urgency: Urgency | str, start: datetime) -> datetime:
    return start + sla_window(urgency)


def sla_status(case: Case, now: datetime | None = None) -> SlaStatus:
    """Return where ``case`` stands: at risk once less than ``SLA_AT_RISK_PERCENT`` is left."""
    if case.reported_at is not None:
        return SlaStatus.MET if case.reported_at <= case.sla_due_at else SlaStatus.MISSED
    if case.state == State.CANCELLED:
        return SlaStatus.STOPPED
    now = now or clock.now()
    left = case.sla_due_at - now
    if left <= timedelta(0):
        return SlaStatus.LATE
    window = case.sla_due_at - case.sla_started_at
    if left * 100 < window * current_app.config["SLA_AT_RISK_PERCENT"]:
        return SlaStatus.AT_RISK
    return SlaStatus.ON_TIME


def time_left(case: Case, now: datetime | None = None) -> timedelta:
    """Return the time until the deadline (negative once it passed)."""
    return case.sla_due_at - (now or clock.now())
