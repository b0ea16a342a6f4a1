"""Who may see which case, and how much of it. Every decision is made here, on the server.

- A patient or physician sees the cases they requested or are named on as referrer.
- A radiologist sees a case offered to them as an *offer* (no patient data), and
  the whole case once they accepted it (read or overread) until it is cancelled or
  reassigned away; a de-identified case shows them no name or date of birth.
- An admin sees every case; each view is audited like anyone else's.
"""

from __future__ import annotations

import enum

from sqlalchemy import Select, exists, func, or_, select

from portal.auth.models import Role, User
from portal.cases.models import Case, CaseStudy, Offer
from portal.cases.states import OfferStatus, State
from portal.errors import NotFound
from portal.extensions import db
from portal.studies.models import Study


class View(enum.StrEnum):
    FULL = "full"  # requester, admin
    READER = "reader"  # assigned radiologist or overreader: clinical facts, no PHI if de-identified
    OFFER = "offer"  # offered radiologist: the PHI-free summary only


def visible_cases(user: User) -> Select:
    """Return a query of the cases ``user`` may open at any level."""
    query = select(Case)
    if user.role == Role.ADMIN:
        return query
    if user.role == Role.RADIOLOGIST:
        offered = exists().where(Offer.case_id == Case.id, Offer.radiologist_id == user.id)
        offered = offered.where(Offer.status == OfferStatus.OPEN)
        return query.where(or_(Case.assignee_id == user.id, Case.overreader_id == user.id, offered))
    return query.where(or_(Case.requester_id == user.id, Case.referring_physician_id == user.id))


def view_of(user: User, case: Case) -> View | None:
    """Return how much of ``case`` ``user`` may see, or ``None`` for nothing."""
    if user.role == Role.ADMIN or user.id in (case.requester_id, case.referring_physician_id):
        return View.FULL
    if user.role != Role.RADIOLOGIST:
        return None
    reading = case.state != State.CANCELLED and user.id in (case.assignee_id, case.overreader_id)
    if reading:
        return View.READER
    if any(offer.radiologist_id == user.id for offer in case.open_offers()):
        return View.OFFER
    return None


def get_case(user: User, number: str) -> tuple[Case, View]:
    """Return the case numbered ``number`` and ``user``'s view of it.

    :raise NotFound: no such case, or not visible to ``user`` (the same answer, so
        case numbers cannot be probed).
    """
    case = db.session.scalars(select(Case).where(Case.number == number.upper())).first()
    view = view_of(user, case) if case is not None else None
    if view is None:
        raise NotFound("No such case.")
    return case, view


def study_ids_for_case_readers(user: User) -> Select:
    """Ids of the studies ``user`` reads as assignee or overreader (de-identified copies)."""
    reading = func.coalesce(CaseStudy.reading_study_id, CaseStudy.study_id)
    return (
        select(reading)
        .join(Case, Case.id == CaseStudy.case_id)
        .where(
            Case.state != State.CANCELLED,
            or_(Case.assignee_id == user.id, Case.overreader_id == user.id),
        )
    )


def visible_studies(user: User) -> Select:
    """Studies ``user`` may retrieve: their uploads, their cases' studies; admins see all.

    A radiologist reading a de-identified case reaches only its de-identified copies.
    """
    query = select(Study)
    if user.role == Role.ADMIN:
        return query
    own = Study.owner_id == user.id
    if user.role == Role.RADIOLOGIST:
        return query.where(or_(own, Study.id.in_(study_ids_for_case_readers(user))))
    requested = (
        select(CaseStudy.study_id)
        .join(Case, Case.id == CaseStudy.case_id)
        .where(or_(Case.requester_id == user.id, Case.referring_physician_id == user.id))
    )
    return query.where(or_(own, Study.id.in_(requested)))


def reading_copy_ids() -> Select:
    """Ids of studies that are de-identified copies made for a case."""
    return select(CaseStudy.reading_study_id).where(CaseStudy.reading_study_id.is_not(None))
