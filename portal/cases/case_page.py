"""What the case page shows each viewer: the SLA clock, the timeline, studies and buttons.

Pure functions of a case and a viewer, so the rules (who is named, which notes
are shown, which moves are offered) read in one place and the view stays thin.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import func, select

from portal.auth.models import Role, User
from portal.cases.access import View
from portal.cases.models import Case, CaseEvent
from portal.cases.sla import SlaStatus, sla_status, time_left
from portal.cases.transitions import MOVES, parties
from portal.extensions import db
from portal.studies.models import Instance, Series

#: Moves made from other pages (reports) or by the system, never by a button here.
_NOT_BUTTONS = frozenset({"sign_report", "sign_overread", "expire"})
#: Moves whose actor the timeline names to everyone who sees it.
_NAMED = {
    "accept": "Accepted by {}",
    "sign_report": "Report signed by {}",
    "accept_overread": "Overread accepted by {}",
    "sign_overread": "Overread signed by {}",
}
_UNNAMED = {
    "submit": "Request submitted",
    "offer": "Offered to radiologists",
    "decline": "A radiologist declined",
    "expire": "Nobody accepted in time; a coordinator was called",
    "reassign": "Reassigned to another radiologist",
    "request_overread": "Overread requested",
    "offer_overread": "Offered to radiologists for overread",
    "decline_overread": "A radiologist declined the overread",
    "close": "Closed",
    "cancel": "Cancelled",
    "reopen": "Reopened",
}
#: Moves whose note everyone who sees the timeline may read; decline reasons are admins' only.
_PUBLIC_NOTES = frozenset({"cancel", "request_overread"})


@dataclass(frozen=True)
class SlaClock:
    status: SlaStatus
    due_at: datetime
    left: timedelta

    @property
    def running(self) -> bool:
        return self.status in (SlaStatus.ON_TIME, SlaStatus.AT_RISK, SlaStatus.LATE)

    @property
    def css(self) -> str:
        return self.status.value.replace(" ", "-")

    @property
    def left_text(self) -> str:
        """``"3 h 10 min left"`` or ``"late by 5 min"``; empty once the clock stopped."""
        if not self.running:
            return ""
        if self.left > timedelta(0):
            return f"{describe_duration(self.left)} left"
        return f"late by {describe_duration(self.left)}"


def sla_clock(case: Case, now: datetime | None = None) -> SlaClock:
    return SlaClock(sla_status(case, now), case.sla_due_at, time_left(case, now))


def describe_duration(delta: timedelta) -> str:
    """Return ``delta`` in words, coarse enough to read at a glance: ``"2 h 5 min"``."""
    minutes = int(abs(delta).total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min"


@dataclass(frozen=True)
class Entry:
    at: datetime
    text: str
    note: str = ""


def timeline(case: Case, view: View, viewer: User) -> list[Entry]:
    """Return the case's moves as ``viewer`` may read them (nothing for an offer view).

    Radiologists are named from their accept on; who a case was offered to is
    never said here (admins see the offers table). Admins see every actor and note.
    """
    if view == View.OFFER:
        return []
    admin = viewer.role == Role.ADMIN
    return [_entry(event, admin) for event in case.events]


def _entry(event: CaseEvent, admin: bool) -> Entry:
    actor = event.actor.name if event.actor is not None else "the system"
    if event.action in _NAMED:
        text = _NAMED[event.action].format(actor)
    else:
        text = _UNNAMED.get(event.action, event.action.replace("_", " ").capitalize())
        if admin:
            text = f"{text} ({actor})"
    note = event.note if admin or event.action in _PUBLIC_NOTES else ""
    return Entry(event.at, text, note)


def available_actions(case: Case, user: User) -> set[str]:
    """Return the moves ``user`` may make on ``case`` now, by the state machine's table."""
    mine = parties(case, user)
    return {
        move.action
        for move in MOVES
        if case.state in move.sources and move.parties & mine and move.action not in _NOT_BUTTONS
    }


@dataclass(frozen=True)
class StudyRow:
    description: str
    modalities: str
    study_date: date | None
    instances: int


def study_rows(case: Case, view: View) -> list[StudyRow]:
    """Return the studies ``view`` shows: the reading copies to a reader, else the originals."""
    if view == View.OFFER:
        return []
    studies = [
        link.study_for_reading if view == View.READER else link.study for link in case.studies
    ]
    counts = _instance_counts([study.id for study in studies])
    return [
        StudyRow(
            description=study.description or "Study without description",
            modalities="/".join(study.modalities) or "imaging",
            study_date=study.study_date,
            instances=counts.get(study.id, 0),
        )
        for study in studies
    ]


def _instance_counts(study_ids: list[int]) -> dict[int, int]:
    rows = db.session.execute(
        select(Series.study_id, func.count(Instance.id))
        .join(Instance, Instance.series_id == Series.id)
        .where(Series.study_id.in_(study_ids))
        .group_by(Series.study_id)
    )
    return {study_id: count for study_id, count in rows}


def shows_subject(case: Case, view: View) -> bool:
    """Whether ``view`` may show the patient's name and date of birth."""
    return view == View.FULL or (view == View.READER and not case.deidentify)
