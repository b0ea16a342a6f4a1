"""Escalation policies: how long each step waits and how many rounds, per urgency."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import select

from portal import clock
from portal.audit.operations import record
from portal.auth.models import User
from portal.cases.states import Urgency
from portal.errors import InvalidInput
from portal.extensions import db
from portal.oncall.models import EscalationPolicy

WAIT_MINUTES = range(1, 241)
ROUNDS = range(1, 11)


class PolicyDefaults(NamedTuple):
    wait_minutes: int
    rounds: int
    page_pool: bool


#: Used until an admin saves a policy. A round of one layer and the pool takes
#: 2 x ``wait_minutes``: STAT gives up after 30 min (SLA 1 h), urgent after 1 h
#: (SLA 4 h). Routine waits 2 h per step for 3 rounds (12 h; SLA 48 h) so that
#: routine pages held through a radiologist's quiet hours are answered in the
#: morning instead of the case going unassigned and waking the admins at night.
DEFAULT_POLICIES: dict[str, PolicyDefaults] = {
    Urgency.STAT: PolicyDefaults(5, 3, True),
    Urgency.URGENT: PolicyDefaults(15, 2, True),
    Urgency.ROUTINE: PolicyDefaults(120, 3, True),
}


def policy_for(urgency: str) -> EscalationPolicy:
    """Return the saved policy for ``urgency``, or an unsaved one holding the defaults."""
    urgency = Urgency(urgency)
    saved = db.session.scalars(
        select(EscalationPolicy).where(EscalationPolicy.urgency == urgency)
    ).first()
    if saved is not None:
        return saved
    defaults = DEFAULT_POLICIES[urgency]
    return EscalationPolicy(urgency=urgency.value, **defaults._asdict())


def save_policy(
    urgency: str, wait_minutes: int, rounds: int, page_pool: bool, actor: User
) -> EscalationPolicy:
    """Store the policy for ``urgency`` and audit the change; the caller commits.

    :raise InvalidInput: an unknown urgency, a wait outside 1-240 minutes or rounds outside 1-10.
    """
    if urgency not in {u.value for u in Urgency}:
        raise InvalidInput(f"No urgency called {urgency!r}.")
    if wait_minutes not in WAIT_MINUTES:
        raise InvalidInput("Wait between 1 and 240 minutes for an answer.")
    if rounds not in ROUNDS:
        raise InvalidInput("Repeat between 1 and 10 rounds.")
    policy = policy_for(urgency)
    before = _described(policy)
    policy.wait_minutes, policy.rounds, policy.page_pool = wait_minutes, rounds, page_pool
    policy.updated_at = clock.now()
    db.session.add(policy)
    record(
        "escalation_policy.changed",
        actor,
        target=policy.urgency,
        before=before,
        after=_described(policy),
    )
    return policy


def _described(policy: EscalationPolicy) -> dict:
    return {
        "wait_minutes": policy.wait_minutes,
        "rounds": policy.rounds,
        "page_pool": policy.page_pool,
    }
