"""Operations on cases: each locks the case, checks the move, changes it, and leaves
the commit to the caller (views and the dispatcher), so the state change, its
audit event and its outbox rows land in one transaction.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import select

from portal import clock
from portal.audit.operations import record
from portal.auth.models import Role, User
from portal.cases import notify, transitions
from portal.cases.access import reading_copy_ids
from portal.cases.models import Case, CaseAttachment, CaseEvent, CaseStudy, Offer
from portal.cases.sla import due_at
from portal.cases.states import (
    AWAITING_RADIOLOGIST,
    OfferPurpose,
    OfferStatus,
    State,
    Subspecialty,
    Urgency,
)
from portal.cases.transitions import lock_case
from portal.deid.models import DeidMapping
from portal.errors import Conflict, InvalidInput, PermissionDenied
from portal.extensions import db
from portal.notifications.operations import enqueue
from portal.studies.models import Study

NUMBER_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # no 0/O, 1/I/L


class CaseTaken(Conflict):
    """Someone else accepted the case first."""

    title = "Already taken"


@dataclass
class CaseRequest:
    """What a requester fills in; the view builds it from the form."""

    clinical_question: str
    urgency: Urgency
    study_ids: list[int]
    subspecialty: Subspecialty = Subspecialty.GENERAL
    history: str = ""
    deidentify: bool = False
    subject_name: str = ""
    subject_birth_date: date | None = None
    subject_email: str = ""
    subject_phone: str = ""
    notify_phone: str = ""
    sms_opt_in: bool = False
    consent_text: str | None = None
    attachments: list[CaseAttachment] = field(default_factory=list)
    #: ``{study id: de-identified copy id}``, from ``reading_copies.make_reading_copies``
    reading_copies: dict[int, int] = field(default_factory=dict)


def new_case_number() -> str:
    """Return an unused case number: six characters, no patient data, easy to read aloud."""
    while True:
        number = "".join(secrets.choice(NUMBER_ALPHABET) for _ in range(6))
        if db.session.scalar(select(Case.id).where(Case.number == number)) is None:
            return number


def requestable_studies(user: User) -> list[Study]:
    """Return the studies ``user`` may attach to a request: their own uploads.

    De-identified copies are left out, linked to a case or not (a request that
    failed after its copies were made leaves them unlinked): their Study
    Instance UID is a stored replacement.
    """
    copies = select(DeidMapping.replacement).where(
        DeidMapping.owner_id == user.id, DeidMapping.kind == "uid"
    )
    return db.session.scalars(
        select(Study)
        .where(
            Study.owner_id == user.id,
            Study.id.not_in(reading_copy_ids()),
            Study.study_instance_uid.not_in(copies),
        )
        .order_by(Study.created_at.desc())
    ).all()


def submit_case(requester: User, request: CaseRequest, number: str | None = None) -> Case:
    """Open a case for ``request``; the caller commits.

    :param number: a number chosen beforehand (de-identified copies are made under it).
    :raise PermissionDenied: the user is not a patient or physician.
    :raise InvalidInput: no studies, studies not the requester's, or no consent.
    """
    if requester.role not in (Role.PATIENT, Role.PHYSICIAN):
        raise PermissionDenied("Only patients and physicians request second opinions.")
    studies = _own_studies(requester, request.study_ids)
    now = clock.now()
    case = Case(
        number=number or new_case_number(),
        state=State.SUBMITTED,
        requester_id=requester.id,
        submitted_at=now,
        sla_started_at=now,
        sla_due_at=due_at(request.urgency, now),
        **_request_fields(requester, request),
    )
    case.requester = requester
    if request.deidentify and set(request.reading_copies) != {study.id for study in studies}:
        raise InvalidInput("De-identified reading needs a de-identified copy of every study.")
    case.studies = [
        CaseStudy(study=study, reading_study_id=request.reading_copies.get(study.id))
        for study in studies
    ]
    case.attachments = list(request.attachments)
    db.session.add(case)
    db.session.flush()
    case.events.append(CaseEvent(action="submit", to_state=case.state, actor_id=requester.id))
    record("case.submit", requester, case_id=case.id, target=case.number, after=case.state)
    notify.on_move(case, "submit", requester, before="")
    schedule_sla_timer(case)
    return case


def _request_fields(requester: User, request: CaseRequest) -> dict:
    fields = {
        "urgency": Urgency(request.urgency),
        "subspecialty": Subspecialty(request.subspecialty),
        "clinical_question": request.clinical_question.strip(),
        "history": request.history.strip(),
        "deidentify": request.deidentify,
        "subject_birth_date": request.subject_birth_date,
        "subject_phone": request.subject_phone.strip(),
        "notify_phone": request.notify_phone.strip(),
        "sms_opt_in": request.sms_opt_in and bool(request.notify_phone.strip()),
    }
    if requester.role == Role.PHYSICIAN:
        if not request.subject_name.strip():
            raise InvalidInput("Give the patient's name.")
        fields["referring_physician_id"] = requester.id
        fields["subject_name"] = request.subject_name.strip()
        fields["subject_email"] = request.subject_email.strip()
    else:
        if not request.consent_text:
            raise InvalidInput("Consent to sharing is needed before a request is sent.")
        fields["subject_name"] = requester.name
        fields["subject_email"] = requester.email
        fields["consent_text"] = request.consent_text
        fields["consent_at"] = clock.now()
    return fields


def _own_studies(requester: User, study_ids: Iterable[int]) -> list[Study]:
    wanted = set(study_ids)
    if not wanted:
        raise InvalidInput("Attach at least one study.")
    owned = {study.id: study for study in requestable_studies(requester) if study.id in wanted}
    if set(owned) != wanted:
        raise InvalidInput("Attach only studies you uploaded.")
    return [owned[study_id] for study_id in sorted(wanted)]


def schedule_sla_timer(case: Case) -> None:
    """Put the SLA check in the outbox: at the deadline, an unaccepted case goes unassigned."""
    enqueue(
        channel="timer",
        recipient=f"case:{case.number}",
        kind="case.sla_check",
        body="",
        case_id=case.id,
        due_at=case.sla_due_at,
        idempotency_key=f"case:{case.id}:sla:{case.sla_due_at.isoformat()}",
    )


def expire_if_unaccepted(case_id: int) -> bool:
    """Mark the case ``unassigned`` if nobody accepted it by its deadline; the caller commits.

    :return: whether the case was expired.
    """
    case = lock_case(case_id)
    if case.state not in AWAITING_RADIOLOGIST or clock.now() < case.sla_due_at:
        return False
    withdrawn = withdraw_offers(case, OfferPurpose.READ)
    transitions.apply(case, "expire", None, withdrawn_from=withdrawn)
    return True


def offer_case(case_id: int, radiologists: Iterable[User], by: User | None) -> Case:
    """Offer the case to ``radiologists`` (to read, or to overread once one is asked for).

    :raise InvalidInput: nobody new to offer to, or someone who is not an active radiologist.
    """
    case = lock_case(case_id)
    overread = case.state == State.OVERREAD_REQUESTED
    action = "offer_overread" if overread else "offer"
    move = transitions.find_move(case, action, by)
    fresh = _fresh_offerees(case, radiologists, overread)
    purpose = OfferPurpose.OVERREAD if overread else OfferPurpose.READ
    for radiologist in fresh:
        case.offers.append(
            Offer(
                radiologist_id=radiologist.id,
                purpose=purpose,
                offered_by_id=getattr(by, "id", None),
            )
        )
    transitions.record_move(case, move, by, offered=fresh)
    return case


def _fresh_offerees(case: Case, radiologists: Iterable[User], overread: bool) -> list[User]:
    already = {offer.radiologist_id for offer in case.open_offers()}
    fresh = []
    for user in radiologists:
        if user.role != Role.RADIOLOGIST or not user.active:
            raise InvalidInput(f"{user.email} is not an active radiologist.")
        if overread and user.id == case.assignee_id:
            raise InvalidInput("The radiologist who wrote the report cannot overread it.")
        if user.id not in already and user not in fresh:
            fresh.append(user)
    if not fresh:
        raise InvalidInput("Choose at least one radiologist who has no open offer of this case.")
    return fresh


def accept_case(case_id: int, radiologist: User) -> Case:
    """Accept the read: the first radiologist wins; the others are told it was taken.

    :raise CaseTaken: another radiologist accepted first.
    """
    case = lock_case(case_id)
    if case.assignee_id not in (None, radiologist.id) and _had_offer(case, radiologist):
        raise CaseTaken(f"Case {case.number} was already accepted by another radiologist.")
    move = transitions.find_move(case, "accept", radiologist)
    case.assignee_id, case.assignee = radiologist.id, radiologist
    case.accepted_at = clock.now()
    taken_from = _settle_offers(case, radiologist, OfferPurpose.READ)
    transitions.record_move(case, move, radiologist, taken_from=taken_from)
    return case


def accept_overread(case_id: int, radiologist: User) -> Case:
    """Accept the overread; as :func:`accept_case`, the first wins."""
    case = lock_case(case_id)
    if case.overreader_id not in (None, radiologist.id) and _had_offer(case, radiologist):
        raise CaseTaken(f"The overread of case {case.number} was already accepted.")
    move = transitions.find_move(case, "accept_overread", radiologist)
    case.overreader_id, case.overreader = radiologist.id, radiologist
    taken_from = _settle_offers(case, radiologist, OfferPurpose.OVERREAD)
    transitions.record_move(case, move, radiologist, taken_from=taken_from)
    return case


def _had_offer(case: Case, radiologist: User) -> bool:
    return any(offer.radiologist_id == radiologist.id for offer in case.offers)


def _settle_offers(case: Case, winner: User, purpose: str) -> list[User]:
    """Mark the winner's offer accepted and the others taken; return the others."""
    now = clock.now()
    others = []
    for offer in case.open_offers(purpose):
        offer.answered_at = now
        if offer.radiologist_id == winner.id:
            offer.status = OfferStatus.ACCEPTED
        else:
            offer.status = OfferStatus.TAKEN
            others.append(offer.radiologist)
    return others


def decline_case(case_id: int, radiologist: User, reason: str = "") -> Case:
    """Decline an offer (to read or overread); the case stays offered while others may accept."""
    case = lock_case(case_id)
    overread = case.state == State.OVERREAD_REQUESTED
    move = transitions.find_move(case, "decline_overread" if overread else "decline", radiologist)
    purpose = OfferPurpose.OVERREAD if overread else OfferPurpose.READ
    for offer in case.open_offers(purpose):
        if offer.radiologist_id == radiologist.id:
            offer.status, offer.answered_at = OfferStatus.DECLINED, clock.now()
    target = None
    if not overread:
        target = State.OFFERED if case.open_offers(purpose) else State.DECLINED
    transitions.record_move(case, move, radiologist, target=target, note=reason)
    return case


def reassign_case(case_id: int, admin: User, radiologists: Iterable[User]) -> Case:
    """Take the read from whoever holds or was offered it and offer it to ``radiologists``."""
    case = lock_case(case_id)
    move = transitions.find_move(case, "reassign", admin)
    withdrawn = withdraw_offers(case, OfferPurpose.READ)
    if case.assignee is not None:
        withdrawn.append(case.assignee)
    case.assignee_id, case.assignee, case.accepted_at = None, None, None
    fresh = _fresh_offerees(case, radiologists, overread=False)
    for radiologist in fresh:
        case.offers.append(Offer(radiologist_id=radiologist.id, offered_by_id=admin.id))
    transitions.record_move(case, move, admin, offered=fresh, withdrawn_from=withdrawn)
    return case


def cancel_case(case_id: int, user: User, reason: str = "") -> Case:
    """Cancel the case; offers are withdrawn and whoever held it is told."""
    case = lock_case(case_id)
    move = transitions.find_move(case, "cancel", user)
    withdrawn = withdraw_offers(case, None)
    withdrawn += [u for u in (case.assignee, case.overreader) if u is not None]
    transitions.record_move(case, move, user, note=reason, withdrawn_from=withdrawn)
    return case


def reopen_case(case_id: int, admin: User) -> Case:
    """Reopen a cancelled or unassigned case with a fresh SLA clock."""
    case = lock_case(case_id)
    move = transitions.find_move(case, "reopen", admin)
    now = clock.now()
    case.assignee_id, case.assignee, case.accepted_at = None, None, None
    case.overreader_id, case.overreader = None, None
    case.sla_started_at, case.sla_due_at = now, due_at(case.urgency, now)
    transitions.record_move(case, move, admin)
    schedule_sla_timer(case)
    return case


def close_case(case_id: int, user: User) -> Case:
    case = lock_case(case_id)
    transitions.apply(case, "close", user)
    case.closed_at = clock.now()
    return case


def request_overread(case_id: int, user: User, note: str = "") -> Case:
    """Ask for a second radiologist's review of the signed report (again, for another level)."""
    case = lock_case(case_id)
    move = transitions.find_move(case, "request_overread", user)
    case.overreader_id, case.overreader = None, None
    transitions.record_move(case, move, user, note=note)
    return case


def withdraw_offers(case: Case, purpose: str | None) -> list[User]:
    now = clock.now()
    withdrawn = []
    for offer in case.open_offers(purpose):
        offer.status, offer.answered_at = OfferStatus.WITHDRAWN, now
        withdrawn.append(offer.radiologist)
    return withdrawn


def active_radiologists() -> list[User]:
    return db.session.scalars(
        select(User).where(User.role == Role.RADIOLOGIST, User.active.is_(True)).order_by(User.name)
    ).all()
