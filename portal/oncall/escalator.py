"""Deliver escalation steps: page the step's radiologists and queue the next step.

A round pages the on-call radiologists of each layer of the case's schedule in
turn (anyone added ad hoc with layer 1), then, when the policy says so, the
whole subspecialty pool; each step waits the policy's minutes for an answer.
Nobody is paged twice in a round, nor again after declining. A step with
nobody to page moves on at once. When the last round has waited, a read goes
``unassigned`` (which pages the admins) and an overread pages the admins; with
nobody to page at all, that happens at once.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select

from portal import clock
from portal.auth.models import Role, User
from portal.cases import notify, transitions
from portal.cases.models import Case
from portal.cases.operations import active_radiologists, offer_case, withdraw_offers
from portal.cases.states import AWAITING_RADIOLOGIST, OfferPurpose, OfferStatus, State, Subspecialty
from portal.cases.transitions import lock_case
from portal.extensions import db
from portal.notifications.channels import Delivery
from portal.notifications.models import Notification
from portal.oncall import escalation, pages
from portal.oncall.models import EscalationPolicy, PagingProfile
from portal.oncall.policies import policy_for
from portal.oncall.schedules import on_call, schedule_for

logger = logging.getLogger(__name__)
PlanStep = tuple[str, list[User]]  # a label ("layer 1", "pool") and whom it pages


@dataclass(frozen=True)
class Step:
    """Where paging stands: step ``index`` of round ``round`` of the run ``run``."""

    purpose: str
    run: str
    round: int
    index: int

    @classmethod
    def from_row(cls, row: Notification) -> Step:
        body = json.loads(row.body)
        return cls(body["purpose"], body["run"], body["round"], body["step"])


class EscalationChannel:
    name = "escalation"

    def send(self, notification: Notification) -> Delivery:
        """Take one escalation step in a transaction of its own."""
        step = Step.from_row(notification)
        try:
            outcome = take_step(notification.case_id, step)
            db.session.commit()
        except BaseException:
            db.session.rollback()
            raise
        logger.info(
            "case %s: %s escalation round %s step %s: %s",
            notification.case_id,
            step.purpose,
            step.round,
            step.index,
            outcome,
        )
        return Delivery(via=self.name, provider_status=outcome)


def take_step(case_id: int, step: Step) -> str:
    """Page the radiologists of ``step`` (or of the first later step that has any).

    Queues the step after it, or gives up when the rounds are over. The caller commits.

    :return: what was done, for the outbox row's provider status.
    """
    case = lock_case(case_id)
    if not awaiting(case, step.purpose):
        return "not needed"
    policy = policy_for(case.urgency)
    plan = plan_round(case, step.purpose, policy)
    round_, index = step.round, step.index
    while round_ < policy.rounds:
        if index >= len(plan):
            round_, index = round_ + 1, 0
            continue
        label, people = plan[index]
        if people:
            _page(case, step.purpose, people, round_)
            _queue_next(case, step, round_, index + 1, len(plan), policy)
            return f"paged {len(people)} ({label})"
        index += 1
    return _give_up_paging(case, step.purpose)


def awaiting(case: Case, purpose: str) -> bool:
    """Whether ``case`` still waits for a radiologist to accept it for ``purpose``."""
    if purpose == OfferPurpose.OVERREAD:
        return case.state == State.OVERREAD_REQUESTED and case.overreader_id is None
    return case.state in AWAITING_RADIOLOGIST


def plan_round(case: Case, purpose: str, policy: EscalationPolicy) -> list[PlanStep]:
    """Return the steps of a round as of now, each with the radiologists it pages."""
    steps = _layer_steps(case)
    if policy.page_pool:
        steps.append(("pool", pool(case.subspecialty)))
    skipped = _never_paged(case, purpose)
    plan = []
    for label, people in steps:
        wanted = []
        for user in people:
            if user.id not in skipped and user.role == Role.RADIOLOGIST and user.active:
                wanted.append(user)
                skipped.add(user.id)
        plan.append((label, wanted))
    return plan


def _layer_steps(case: Case) -> list[PlanStep]:
    schedule = schedule_for(case.subspecialty)
    if schedule is None:
        return []
    now_on_call = on_call(schedule, clock.now())
    steps = []
    for number, layer in enumerate(schedule.layers, start=1):
        positions = {layer.position, 0} if number == 1 else {layer.position}  # 0: ad hoc
        steps.append((f"layer {number}", [s.user for s in now_on_call if s.position in positions]))
    return steps


def _never_paged(case: Case, purpose: str) -> set[int]:
    """Who escalation leaves alone: those who declined, and the reader for an overread."""
    declined = {
        offer.radiologist_id
        for offer in case.offers
        if offer.purpose == purpose and offer.status == OfferStatus.DECLINED
    }
    if purpose == OfferPurpose.OVERREAD and case.assignee_id is not None:
        declined.add(case.assignee_id)
    return declined


def pool(subspecialty: str) -> list[User]:
    """Active radiologists who read ``subspecialty`` (a general case: every one of them)."""
    radiologists = active_radiologists()
    if subspecialty == Subspecialty.GENERAL:
        return radiologists
    profiles = db.session.scalars(
        select(PagingProfile).where(PagingProfile.user_id.in_([u.id for u in radiologists]))
    ).all()
    readers = {p.user_id for p in profiles if subspecialty in p.subspecialty_list}
    return [user for user in radiologists if user.id in readers]


def _page(case: Case, purpose: str, people: list[User], round_: int) -> None:
    """Offer the case to those without an open offer; remind the others after round one."""
    holding = {offer.radiologist_id for offer in case.open_offers(purpose)}
    fresh = [user for user in people if user.id not in holding]
    if fresh:
        offer_case(case.id, fresh, by=None)  # its notifications page them
    if round_ > 0:
        for user in people:
            if user.id in holding:
                pages.page_radiologist(case, user, purpose, attempt=round_)


def _queue_next(
    case: Case, step: Step, round_: int, index: int, steps: int, policy: EscalationPolicy
) -> None:
    if index >= steps:
        round_, index = round_ + 1, 0
    due = clock.now() + timedelta(minutes=policy.wait_minutes)
    escalation.schedule_step(case, step.purpose, step.run, round_, index, due_at=due)


def _give_up_paging(case: Case, purpose: str) -> str:
    if purpose == OfferPurpose.OVERREAD:
        news = f"Nobody accepted the overread of case {case.number}."
        pages.page_admins(case, news)
        notify.tell_admins(case, "overread-unanswered", f"{news} It needs a coordinator.")
        return "gave up: admins paged"
    give_up(case.id)
    return "gave up: case unassigned"


def give_up(case_id: int) -> bool:
    """Mark a read nobody accepted ``unassigned``, which pages the admins; the caller commits.

    As :func:`portal.cases.operations.expire_if_unaccepted`, without waiting for the deadline.

    :return: whether the case was marked unassigned.
    """
    case = lock_case(case_id)
    if case.state not in AWAITING_RADIOLOGIST:
        return False
    withdrawn = withdraw_offers(case, OfferPurpose.READ)
    transitions.apply(case, "expire", None, withdrawn_from=withdrawn)
    return True
