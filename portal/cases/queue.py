"""The coordinators' queue: every open case, the ones closest to missing their SLA first."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from portal import clock
from portal.cases.case_page import SlaClock, sla_clock
from portal.cases.models import Case, CaseStudy
from portal.cases.sla import SlaStatus
from portal.cases.states import OPEN_STATES, Subspecialty, Urgency
from portal.cases.summary import CaseSummary, summarize
from portal.extensions import db
from portal.studies.models import Study

#: Late first, then at risk, then on time; reported cases waiting for an overread last.
RISK_ORDER = {SlaStatus.LATE: 0, SlaStatus.AT_RISK: 1, SlaStatus.ON_TIME: 2}


@dataclass(frozen=True)
class QueueFilter:
    state: str = ""
    urgency: str = ""
    subspecialty: str = ""

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> QueueFilter:
        """Read the filters from query arguments; unknown values mean "any"."""

        def pick(name: str, allowed: set[str]) -> str:
            value = args.get(name, "")
            return value if value in allowed else ""

        return cls(
            state=pick("state", {s.value for s in OPEN_STATES}),
            urgency=pick("urgency", {u.value for u in Urgency}),
            subspecialty=pick("subspecialty", {s.value for s in Subspecialty}),
        )


@dataclass(frozen=True)
class QueueRow:
    case: Case
    clock: SlaClock
    summary: CaseSummary


def open_cases(filters: QueueFilter) -> list[QueueRow]:
    """Return the open cases matching ``filters``, sorted by SLA risk, then due time."""
    query = (
        select(Case)
        .where(Case.state.in_([s.value for s in OPEN_STATES]))
        .options(
            selectinload(Case.studies).options(
                selectinload(CaseStudy.study).options(
                    selectinload(Study.series), selectinload(Study.patient)
                ),
                selectinload(CaseStudy.reading_study).selectinload(Study.series),
            ),
            selectinload(Case.offers),
            selectinload(Case.assignee),
        )
    )
    for column, value in (
        (Case.state, filters.state),
        (Case.urgency, filters.urgency),
        (Case.subspecialty, filters.subspecialty),
    ):
        if value:
            query = query.where(column == value)
    now = clock.now()
    rows = [
        QueueRow(case, sla_clock(case, now), summarize(case)) for case in db.session.scalars(query)
    ]
    rows.sort(key=lambda row: (RISK_ORDER.get(row.clock.status, 3), row.case.sla_due_at))
    return rows
