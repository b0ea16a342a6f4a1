"""Escalation: layers, then the pool, in rounds; then the case goes unassigned and admins are paged.

Every test runs the real outbox and dispatcher (``drain``) on a frozen clock;
Slack pages land on the log channel and are read back from the outbox.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta

import pytest
from sqlalchemy import select

from portal.audit.models import AuditEvent
from portal.cases import operations, transitions
from portal.cases.states import OfferStatus, State, Urgency
from portal.errors import InvalidInput
from portal.extensions import db
from portal.notifications.models import Status
from portal.oncall.escalator import EscalationChannel, pool
from portal.oncall.policies import policy_for, save_policy
from tests import case_support as cs
from tests.paging_support import drain, make_profile, outbox
from tests.test_oncall_schedules import layer, make_schedule

NOW = datetime(2026, 1, 14, 10, 0, tzinfo=UTC)  # a Wednesday
STEP = timedelta(minutes=5)  # STAT's default wait


@pytest.fixture
def team(app, create_user, frozen_clock):
    """A patient, an admin and three radiologists who can be paged on Slack."""
    frozen_clock.set(NOW)

    class Team:
        patient = create_user("patient", name="Jane Roe")
        admin = create_user("admin", name="Ada Admin")
        rad1, rad2, rad3 = (create_user("radiologist", name=f"Dr {n}") for n in (1, 2, 3))

    for number, user in enumerate((Team.admin, Team.rad1, Team.rad2, Team.rad3)):
        make_profile(app, user, slack=f"U{number}", page_via="slack")
    return Team


@pytest.fixture
def rota(app, team):
    """The general schedule: rad1 on layer 1, rad2 on layer 2; rad3 is only in the pool."""
    return make_schedule(app, layer(team.rad1, name="Primary"), layer(team.rad2, name="Backup"))


def paged(app, case) -> list[int]:
    """Who was paged for ``case`` (user ids, in order; a reminder repeats the id)."""
    return [row.user_id for row in outbox(app, case_id=case.id, kind="case.page")]


def steps(app, case) -> list:
    return outbox(app, case_id=case.id, channel="escalation")


def outcomes(app, case) -> list[str | None]:
    """What each escalation step did (``None``: not taken yet)."""
    return [row.provider_status for row in steps(app, case)]


def pending_step(app, case):
    (step,) = [row for row in steps(app, case) if row.status == Status.PENDING]
    return step


def admin_pages(app, case) -> list:
    return outbox(app, case_id=case.id, kind="case.admin_page")


def wait_and_drain(app, frozen_clock, delta: timedelta = STEP) -> None:
    frozen_clock.advance(delta)
    drain(app)


@pytest.mark.parametrize("app", ["sqlite", "postgresql"], indirect=True)
def test_stat_pages_each_layer_then_the_pool_for_three_rounds(app, team, rota, frozen_clock):
    one, two, three = team.rad1.id, team.rad2.id, team.rad3.id
    case = cs.submit(app, team.patient, urgency=Urgency.STAT)
    drain(app)
    assert paged(app, case) == [one]
    assert steps(app, case)[0].provider_status == "paged 1 (layer 1)"
    step = pending_step(app, case)
    assert step.due_at == NOW + STEP
    body = json.loads(step.body)
    assert (body["purpose"], body["round"], body["step"]) == ("read", 0, 1)
    wait_and_drain(app, frozen_clock)
    assert paged(app, case) == [one, two]
    wait_and_drain(app, frozen_clock)
    assert paged(app, case) == [one, two, three]  # the pool: those not paged yet
    assert steps(app, case)[-2].provider_status == "paged 1 (pool)"
    stored = cs.load(app, case)
    assert stored.state == State.OFFERED and len(stored.open_offers()) == 3
    for _ in range(6):  # rounds 2 and 3 remind the same people
        wait_and_drain(app, frozen_clock)
    assert paged(app, case) == [one, two, three] * 3
    assert admin_pages(app, case) == []
    wait_and_drain(app, frozen_clock)  # the last step has waited
    stored = cs.load(app, case)
    assert stored.state == State.UNASSIGNED
    assert {offer.status for offer in stored.offers} == {OfferStatus.WITHDRAWN}
    assert steps(app, case)[-1].provider_status == "gave up: case unassigned"
    (admin_page,) = admin_pages(app, case)
    assert admin_page.user_id == team.admin.id and "unassigned" in admin_page.body
    assert frozen_clock.moment - NOW == 9 * STEP


def test_an_accept_cancels_the_pending_step(app, team, rota, frozen_clock):
    case = cs.submit(app, team.patient, urgency=Urgency.STAT)
    drain(app)
    cs.accept(app, case, team.rad1)
    step = steps(app, case)[-1]
    assert step.status == Status.CANCELLED
    wait_and_drain(app, frozen_clock, timedelta(hours=1))
    assert paged(app, case) == [team.rad1.id]
    with app.app_context():  # a step already claimed when the accept came is dropped
        delivery = EscalationChannel().send(step)
    assert delivery.provider_status == "not needed"
    assert paged(app, case) == [team.rad1.id]


def test_a_decline_with_nobody_else_left_moves_on_at_once(app, team, rota, frozen_clock):
    one, two, three = team.rad1.id, team.rad2.id, team.rad3.id
    case = cs.submit(app, team.patient, urgency=Urgency.STAT)
    drain(app)
    with app.app_context():
        operations.decline_case(case.id, db.session.merge(team.rad1), "on a procedure")
        db.session.commit()
    drain(app)
    assert paged(app, case) == [one, two]
    wait_and_drain(app, frozen_clock)
    wait_and_drain(app, frozen_clock)  # round 2: rad1 declined, so layer 1 is skipped
    assert paged(app, case) == [one, two, three, two]


def test_nobody_to_page_gives_up_at_once(app, team):
    case = cs.submit(app, team.patient, urgency=Urgency.ROUTINE, subspecialty="neuro")
    drain(app)  # no schedule, and nobody reads neuro
    assert cs.load(app, case).state == State.UNASSIGNED
    assert paged(app, case) == []
    assert steps(app, case)[0].provider_status == "gave up: case unassigned"
    assert [row.user_id for row in admin_pages(app, case)] == [team.admin.id]


def test_the_pool_is_the_subspecialty_or_everyone_for_general(app, team):
    make_profile(app, team.rad3, slack="U3", subspecialties="general,neuro")
    with app.app_context():
        assert [user.id for user in pool("neuro")] == [team.rad3.id]
        assert {user.id for user in pool("general")} == {
            team.rad1.id,
            team.rad2.id,
            team.rad3.id,
        }


def test_an_overread_skips_the_reader_and_ends_with_the_admins(app, team, rota, frozen_clock):
    case = cs.submit(app, team.patient, urgency=Urgency.STAT)
    drain(app)
    cs.accept(app, case, team.rad1)
    with app.app_context():
        transitions.apply(
            transitions.lock_case(case.id), "sign_report", db.session.merge(team.rad1)
        )
        operations.request_overread(case.id, db.session.merge(team.patient))
        db.session.commit()
    drain(app)
    overread_pages = outbox(app, case_id=case.id, kind="case.page", subject="overread")
    assert [row.user_id for row in overread_pages] == [team.rad2.id]  # layer 1 is the reader
    assert steps(app, case)[-2].provider_status == "paged 1 (layer 2)"
    started = frozen_clock.moment
    while "gave up: admins paged" not in outcomes(app, case):
        assert frozen_clock.moment - started < timedelta(hours=1)
        wait_and_drain(app, frozen_clock)
    assert frozen_clock.moment - started == 6 * STEP  # 3 rounds of layer 2 and the pool
    overread_pages = outbox(app, case_id=case.id, kind="case.page", subject="overread")
    assert [row.user_id for row in overread_pages] == [team.rad2.id, team.rad3.id] * 3
    stored = cs.load(app, case)
    assert stored.state == State.OVERREAD_REQUESTED and stored.assignee_id == team.rad1.id
    (admin_page,) = admin_pages(app, case)
    assert "overread" in admin_page.body


@pytest.mark.parametrize(
    ("urgency", "wait"),
    [(Urgency.STAT, 5), (Urgency.URGENT, 15), (Urgency.ROUTINE, 120)],
)
def test_each_urgency_waits_its_own_time(app, team, rota, urgency, wait):
    case = cs.submit(app, team.patient, urgency=urgency)
    drain(app)
    assert pending_step(app, case).due_at == NOW + timedelta(minutes=wait)


def test_a_saved_policy_replaces_the_default(app, team, rota, frozen_clock):
    with app.app_context():
        save_policy("routine", 30, 1, False, db.session.merge(team.admin))
        db.session.commit()
        assert (policy_for("routine").rounds, policy_for("stat").rounds) == (1, 3)
        event = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "escalation_policy.changed")
        ).one()
        assert event.target == "routine" and '"wait_minutes": 30' in event.details
    case = cs.submit(app, team.patient, urgency=Urgency.ROUTINE)
    drain(app)
    assert pending_step(app, case).due_at == NOW + timedelta(minutes=30)
    wait_and_drain(app, frozen_clock, timedelta(minutes=30))
    assert paged(app, case) == [team.rad1.id, team.rad2.id]
    wait_and_drain(app, frozen_clock, timedelta(minutes=30))  # no pool, one round
    assert paged(app, case) == [team.rad1.id, team.rad2.id]
    assert cs.load(app, case).state == State.UNASSIGNED


@pytest.mark.parametrize(
    ("urgency", "wait", "rounds"),
    [("stat", 0, 3), ("stat", 241, 3), ("urgent", 15, 0), ("urgent", 15, 11), ("soon", 5, 1)],
)
def test_a_policy_out_of_bounds_is_refused(app, team, urgency, wait, rounds):
    with app.app_context(), pytest.raises(InvalidInput):
        save_policy(urgency, wait, rounds, True, db.session.merge(team.admin))


@pytest.mark.parametrize(
    ("urgency", "held_until"),
    [(Urgency.ROUTINE, datetime(2026, 1, 14, 7, 0, tzinfo=UTC)), (Urgency.STAT, None)],
)
def test_quiet_hours_hold_a_routine_page_but_not_a_stat_one(
    app, team, rota, frozen_clock, urgency, held_until
):
    night = datetime(2026, 1, 14, 2, 0, tzinfo=UTC)
    frozen_clock.set(night)
    make_profile(app, team.rad1, slack="U1", page_via="slack", quiet=(time(22), time(7)))
    case = cs.submit(app, team.patient, urgency=urgency)
    drain(app)
    (page,) = outbox(app, case_id=case.id, kind="case.page")
    assert page.user_id == team.rad1.id
    assert page.due_at == (held_until or night)
    assert page.status == (Status.PENDING if held_until else Status.SENT)
