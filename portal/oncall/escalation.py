"""Start and hurry escalation: each step is an outbox row on the ``escalation`` channel.

The row due next is the only pointer to where paging stands: its body holds
the round and step, and delivering it (see :mod:`portal.oncall.escalator`)
pages that step's radiologists and writes the following row. Accepting
cancels it; a decline that leaves nobody to answer makes it due now.
"""

from __future__ import annotations

import json

from sqlalchemy import select

from portal import clock
from portal.cases.models import Case
from portal.extensions import db
from portal.notifications.models import Notification, Status
from portal.notifications.operations import enqueue
from portal.oncall.pages import ESCALATE_KIND

CHANNEL = "escalation"


def schedule_step(case: Case, purpose: str, run: str, round_: int, step: int, due_at=None):
    """Queue one escalation step; ``run`` names the paging run it belongs to."""
    return enqueue(
        channel=CHANNEL,
        recipient=f"case:{case.number}",
        kind=ESCALATE_KIND,
        body=json.dumps({"purpose": purpose, "run": run, "round": round_, "step": step}),
        case_id=case.id,
        due_at=due_at or clock.now(),
        idempotency_key=f"case:{case.id}:escalate:{run}:{round_}:{step}",
    )


def start_paging(case: Case, purpose: str) -> Notification:
    """Begin paging ``case`` (to read or to overread) from the first step, now."""
    run = f"{purpose}-v{case.version}"
    return schedule_step(case, purpose, run, 0, 0)


def move_on_now(case: Case) -> None:
    """Make the pending escalation step of ``case`` due now (after a decline)."""
    pending = db.session.scalars(
        select(Notification).where(
            Notification.case_id == case.id,
            Notification.kind == ESCALATE_KIND,
            Notification.status == Status.PENDING,
        )
    ).all()
    now = clock.now()
    for row in pending:
        row.due_at = min(row.due_at, now)
