"""The case state machine, its audit and outbox rows, the SLA clock and timer, access rules."""

from __future__ import annotations

import threading
import time
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from portal.audit.models import AuditEvent
from portal.cases import operations, transitions
from portal.cases.access import View, view_of, visible_studies
from portal.cases.models import Case
from portal.cases.operations import CaseTaken
from portal.cases.sla import SlaStatus, sla_status
from portal.cases.states import OfferStatus, State, Urgency
from portal.cases.summary import age_band
from portal.cases.transitions import IllegalMove
from portal.errors import InvalidInput, PermissionDenied
from portal.extensions import db
from portal.notifications.dispatcher import dispatch_once
from portal.notifications.models import Notification
from portal.studies.models import Study
from tests import case_support as cs


def _merge(*users):
    return [db.session.merge(user) for user in users]


def _outbox(case_id: int) -> list[Notification]:
    return db.session.scalars(
        select(Notification).where(Notification.case_id == case_id).order_by(Notification.id)
    ).all()


def _actions(case_id: int) -> list[str]:
    return db.session.scalars(
        select(AuditEvent.action).where(AuditEvent.case_id == case_id).order_by(AuditEvent.seq)
    ).all()


@pytest.fixture
def people(create_user):
    class People:
        patient = create_user("patient", name="Jane Roe")
        physician = create_user("physician")
        admin = create_user("admin")
        rad1, rad2, rad3 = (create_user("radiologist", name=f"Dr Rad {n}") for n in (1, 2, 3))

    return People


def test_a_whole_read_from_request_to_closed(app, people):
    case = cs.submit(app, people.patient)
    case = cs.offer(app, case, people.rad1, people.rad2, by=people.admin)
    with app.app_context():
        rad1, rad2, rad3, patient, admin = _merge(
            people.rad1, people.rad2, people.rad3, people.patient, people.admin
        )
        operations.decline_case(case.id, rad1, "out of my field")
        assert db.session.get(Case, case.id).state == State.OFFERED  # rad2 may still accept
        operations.decline_case(case.id, rad2)
        assert db.session.get(Case, case.id).state == State.DECLINED
        operations.offer_case(case.id, [rad3], admin)
        operations.accept_case(case.id, rad3)
        locked = transitions.lock_case(case.id)
        transitions.apply(locked, "sign_report", rad3)
        operations.request_overread(case.id, patient, "please double-check")
        operations.offer_case(case.id, [rad1], admin)
        operations.accept_overread(case.id, rad1)
        transitions.apply(transitions.lock_case(case.id), "sign_overread", rad1)
        operations.close_case(case.id, patient)
        db.session.commit()
        case = db.session.get(Case, case.id)
        moves = [(e.action, e.to_state) for e in case.events]
        assert moves == [
            ("submit", "submitted"),
            ("offer", "offered"),
            ("decline", "offered"),
            ("decline", "declined"),
            ("offer", "offered"),
            ("accept", "accepted"),
            ("sign_report", "reported"),
            ("request_overread", "overread_requested"),
            ("offer_overread", "overread_requested"),
            ("accept_overread", "overread_requested"),
            ("sign_overread", "overread_done"),
            ("close", "closed"),
        ]
        assert case.assignee_id == rad3.id and case.overreader_id == rad1.id
        assert _actions(case.id) == [f"case.{action}" for action, _ in moves]
        told = [n.kind for n in _outbox(case.id) if n.recipient == patient.email]
        assert "case.accept" in told and "case.sign_report" in told and "case.close" in told


@pytest.mark.parametrize(
    ("state", "action", "message"),
    [
        (State.SUBMITTED, "accept", "is submitted; it cannot be accepted"),
        (State.CLOSED, "cancel", "is closed; it cannot be cancelled"),
        (State.ACCEPTED, "close", "is accepted; it cannot be closed"),
        (State.CANCELLED, "offer", "is cancelled; it cannot be offered"),
    ],
)
def test_an_illegal_move_is_refused_with_the_reason(app, people, state, action, message):
    case = cs.submit(app, people.patient)
    with app.app_context():
        locked = transitions.lock_case(case.id)
        locked.state = state
        with pytest.raises(IllegalMove, match=message):
            transitions.apply(locked, action, db.session.merge(people.admin))


@pytest.mark.parametrize(
    ("who", "action"),
    [
        ("patient", "reassign"),
        ("patient", "offer"),
        ("rad1", "accept"),  # not offered to them
        ("physician", "cancel"),  # not their case
        ("rad1", "expire"),  # only the timer does that
    ],
)
def test_a_move_by_the_wrong_person_is_refused_and_audited(app, people, who, action):
    case = cs.submit(app, people.patient)
    if action == "accept":
        case = cs.offer(app, case, people.rad2)
    with app.app_context():
        user = db.session.merge(getattr(people, who))
        with pytest.raises(PermissionDenied):
            transitions.apply(transitions.lock_case(case.id), action, user)
        db.session.commit()
        assert _actions(case.id)[-1] == "case.move_refused"
        assert db.session.get(Case, case.id).state != State.CANCELLED


def test_the_requester_may_cancel_only_until_someone_accepts(app, people):
    case = cs.accept(app, cs.offer(app, cs.submit(app, people.patient), people.rad1), people.rad1)
    with app.app_context():
        with pytest.raises(PermissionDenied):
            operations.cancel_case(case.id, db.session.merge(people.patient))
        db.session.rollback()
        operations.cancel_case(case.id, db.session.merge(people.admin), "duplicate request")
        db.session.commit()
        assert db.session.get(Case, case.id).state == State.CANCELLED
        withdrawn = [n for n in _outbox(case.id) if n.kind == "case.withdrawn-cancel"]
        assert [n.recipient for n in withdrawn] == [people.rad1.email]


def test_state_audit_and_outbox_share_one_transaction(app, people):
    case = cs.offer(app, cs.submit(app, people.patient), people.rad1)
    with app.app_context():
        before = (len(_outbox(case.id)), len(_actions(case.id)))
        operations.accept_case(case.id, db.session.merge(people.rad1))
        db.session.rollback()  # the request failed before its commit
        assert db.session.get(Case, case.id).state == State.OFFERED
        assert (len(_outbox(case.id)), len(_actions(case.id))) == before


def test_the_second_to_accept_is_told_it_was_taken(app, people):
    case = cs.accept(
        app, cs.offer(app, cs.submit(app, people.patient), people.rad1, people.rad2), people.rad1
    )
    with pytest.raises(CaseTaken, match="already accepted by another radiologist"):
        cs.accept(app, case, people.rad2)
    case = cs.load(app, case)
    assert {(o.radiologist_id, o.status) for o in case.offers} == {
        (people.rad1.id, OfferStatus.ACCEPTED),
        (people.rad2.id, OfferStatus.TAKEN),
    }


@pytest.mark.parametrize("app", ["postgresql"], indirect=True)
def test_two_radiologists_accepting_at_once_on_postgresql_one_wins(app, people):
    case = cs.offer(app, cs.submit(app, people.patient), people.rad1, people.rad2)
    start = threading.Barrier(2, timeout=20)
    outcomes: dict[int, str] = {}

    def accept(radiologist):
        with app.app_context():
            user = db.session.merge(radiologist)
            db.session.commit()
            start.wait()
            try:
                operations.accept_case(case.id, user)
                time.sleep(0.3)  # hold the row lock while the other one arrives
                db.session.commit()
                outcomes[radiologist.id] = "won"
            except CaseTaken:
                db.session.rollback()
                outcomes[radiologist.id] = "taken"

    threads = [threading.Thread(target=accept, args=(r,)) for r in (people.rad1, people.rad2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes.values()) == ["taken", "won"]
    winner = next(uid for uid, outcome in outcomes.items() if outcome == "won")
    with app.app_context():
        stored = db.session.get(Case, case.id)
        assert stored.state == State.ACCEPTED and stored.assignee_id == winner
        assert _actions(case.id).count("case.accept") == 1


def test_the_sla_timer_marks_an_unaccepted_case_unassigned(app, people, frozen_clock):
    case = cs.offer(app, cs.submit(app, people.patient, urgency=Urgency.STAT), people.rad1)
    with app.app_context():
        dispatch_once()
        assert db.session.get(Case, case.id).state == State.OFFERED
        frozen_clock.advance(timedelta(minutes=61))
        dispatch_once()
        stored = db.session.get(Case, case.id)
        assert stored.state == State.UNASSIGNED
        assert stored.offers[0].status == OfferStatus.WITHDRAWN
        kinds = {(n.recipient, n.kind) for n in _outbox(case.id)}
        assert (people.admin.email, "case.admin-expire") in kinds
        assert (people.patient.email, "case.expire") in kinds
        timer = next(n for n in _outbox(case.id) if n.channel == "timer")
        assert (timer.status, timer.provider_status) == ("sent", "expired")


def test_the_sla_timer_leaves_an_accepted_case_alone(app, people, frozen_clock):
    case = cs.offer(app, cs.submit(app, people.patient, urgency=Urgency.STAT), people.rad1)
    cs.accept(app, case, people.rad1)
    frozen_clock.advance(timedelta(hours=2))
    with app.app_context():
        dispatch_once()
        assert db.session.get(Case, case.id).state == State.ACCEPTED
        timer = next(n for n in _outbox(case.id) if n.channel == "timer")
        assert timer.provider_status == "not needed"


def test_reopening_restarts_the_sla_clock_and_its_timer(app, people, frozen_clock):
    case = cs.submit(app, people.patient, urgency=Urgency.STAT)
    frozen_clock.advance(timedelta(minutes=61))
    with app.app_context():
        dispatch_once()
        frozen_clock.advance(timedelta(hours=1))
        operations.reopen_case(case.id, db.session.merge(people.admin))
        db.session.commit()
        stored = db.session.get(Case, case.id)
        assert stored.state == State.SUBMITTED
        assert stored.sla_due_at == frozen_clock.moment + timedelta(hours=1)
        timers = [n for n in _outbox(case.id) if n.channel == "timer"]
        assert len(timers) == 2 and timers[-1].due_at == stored.sla_due_at


def test_the_sla_clock(app, people, frozen_clock):
    case = cs.submit(app, people.patient, urgency=Urgency.URGENT)  # 4 hours
    with app.app_context():
        stored = db.session.get(Case, case.id)
        assert sla_status(stored) == SlaStatus.ON_TIME
        frozen_clock.advance(timedelta(hours=3, minutes=1))  # under 25 % left
        assert sla_status(stored) == SlaStatus.AT_RISK
        frozen_clock.advance(timedelta(hours=1))
        assert sla_status(stored) == SlaStatus.LATE
        stored.reported_at = frozen_clock.moment
        assert sla_status(stored) == SlaStatus.MISSED
        stored.reported_at = stored.sla_due_at
        assert sla_status(stored) == SlaStatus.MET


def test_sla_windows_come_from_the_configuration(make_app, create_user):
    app = make_app(
        SLA_MINUTES={
            "stat": timedelta(minutes=15),
            "urgent": timedelta(hours=4),
            "routine": timedelta(hours=48),
        }
    )
    with app.app_context():
        from portal.auth import operations as accounts

        patient = accounts.create_user("p@example.org", "P", "patient", "long enough pass")
        db.session.commit()
        study_id = cs.ingest_sample(patient)
        case = operations.submit_case(
            patient,
            operations.CaseRequest("Question?", Urgency.STAT, [study_id], consent_text=cs.CONSENT),
        )
        assert case.sla_due_at - case.submitted_at == timedelta(minutes=15)


def test_no_message_to_a_radiologist_or_by_sms_names_the_patient(app, people):
    case = cs.submit(
        app,
        people.physician,
        subject_name="Jane Roe",
        subject_birth_date=date(1970, 5, 17),
        notify_phone="+15555550100",
        sms_opt_in=True,
    )
    case = cs.offer(app, case, people.rad1, people.rad2)
    cs.accept(app, case, people.rad1)
    with app.app_context():
        rows = _outbox(case.id)
        sms = [n for n in rows if n.channel == "sms"]
        assert len(sms) == 3  # submitted, offered, accepted
        to_radiologists = [n for n in rows if n.user_id in (people.rad1.id, people.rad2.id)]
        assert to_radiologists
        for row in sms + to_radiologists:
            for phi in ("Jane", "Roe", "1970", "CompressedSamples"):  # CT_small's patient name
                assert phi not in row.body + row.subject
        offer = next(n for n in to_radiologists if n.kind == "case.offer")
        assert "Urgent CT" in offer.body and "50-59" in offer.body


@pytest.mark.parametrize(
    ("born", "band"),
    [
        (None, "age unknown"),
        (date(2026, 6, 1), "under 1"),
        (date(2018, 1, 1), "child"),
        (date(2011, 1, 1), "adolescent"),
        (date(2007, 1, 1), "18-19"),
        (date(1975, 11, 24), "50-59"),
        (date(1930, 1, 1), "90+"),
    ],
)
def test_age_bands(born, band):
    assert age_band(born, date(2026, 11, 23)) == band


def test_who_sees_a_case_and_its_studies(app, people):
    case = cs.submit(app, people.physician)
    case = cs.offer(app, case, people.rad1)
    with app.app_context():
        stored = db.session.get(Case, case.id)
        physician, rad1, rad2, admin, patient = _merge(
            people.physician, people.rad1, people.rad2, people.admin, people.patient
        )
        assert view_of(physician, stored) == View.FULL
        assert view_of(admin, stored) == View.FULL
        assert view_of(rad1, stored) == View.OFFER
        assert view_of(rad2, stored) is None and view_of(patient, stored) is None
        study_id = stored.studies[0].study_id

        def studies(user):
            return set(db.session.scalars(visible_studies(user).with_only_columns(Study.id)))

        assert study_id not in studies(rad1)  # an offer shows no images
        operations.accept_case(case.id, rad1)
        db.session.commit()
        assert study_id in studies(rad1) and study_id not in studies(rad2)
        assert view_of(rad1, db.session.get(Case, case.id)) == View.READER


def test_a_deidentified_case_is_read_from_copies_only(app, people):
    with app.app_context():
        patient = db.session.merge(people.patient)
        study_id = cs.ingest_sample(patient)
        original = db.session.get(Study, study_id)
        number = operations.new_case_number()
        from portal.cases.reading_copies import make_reading_copies

        copies = make_reading_copies([original], patient, number)
        case = operations.submit_case(
            patient,
            operations.CaseRequest(
                "Question?",
                Urgency.ROUTINE,
                [study_id],
                deidentify=True,
                consent_text=cs.CONSENT,
                reading_copies=copies,
            ),
            number=number,
        )
        db.session.commit()
        case_id = case.id
    case = cs.accept(app, cs.offer(app, case, people.rad1), people.rad1)
    with app.app_context():
        rad1 = db.session.merge(people.rad1)
        visible = set(db.session.scalars(visible_studies(rad1).with_only_columns(Study.id)))
        copy = db.session.get(Study, copies[study_id])
        assert visible == {copy.id}
        original = db.session.get(Study, study_id)
        assert copy.study_instance_uid != original.study_instance_uid
        assert copy.patient.name != original.patient.name
        assert copy.id not in {
            s.id for s in operations.requestable_studies(db.session.merge(people.patient))
        }
        assert db.session.get(Case, case_id).studies[0].study_for_reading.id == copy.id


def test_deidentified_reading_without_copies_is_refused(app, people):
    with app.app_context():
        patient = db.session.merge(people.patient)
        study_id = cs.ingest_sample(patient)
        with pytest.raises(InvalidInput, match="de-identified copy"):
            operations.submit_case(
                patient,
                operations.CaseRequest(
                    "Q?", Urgency.ROUTINE, [study_id], deidentify=True, consent_text=cs.CONSENT
                ),
            )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"study_ids": []}, "at least one study"),
        ({"consent_text": None}, "Consent"),
    ],
)
def test_a_patient_request_needs_studies_and_consent(app, people, change, message):
    with pytest.raises(InvalidInput, match=message):
        cs.submit(app, people.patient, **change)


def test_studies_of_another_account_cannot_be_attached(app, people):
    with app.app_context():
        other = cs.ingest_sample(db.session.merge(people.physician), "MR_small.dcm")
    with pytest.raises(InvalidInput, match="only studies you uploaded"):
        cs.submit(app, people.patient, study_ids=[other])


def test_case_numbers_are_short_and_unambiguous(app):
    with app.app_context():
        numbers = {operations.new_case_number() for _ in range(200)}
    assert len(numbers) == 200
    assert all(len(n) == 6 and not set(n) & set("01ILO") for n in numbers)


def test_every_case_move_is_one_audit_row(app, people):
    case = cs.submit(app, people.patient)
    with app.app_context():
        assert (
            db.session.scalar(
                select(func.count()).select_from(AuditEvent).where(AuditEvent.case_id == case.id)
            )
            == 1
        )
