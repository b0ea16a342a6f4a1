"""Answers to a page from any channel: accept, decline, ask for a link, ask for status.

The Slack and SMS bots call these; the web case page calls the case
operations directly. An accept made here also queues a viewing link on the
channel it came from. Each function commits.
"""

from __future__ import annotations

from sqlalchemy import select

from portal.auth.models import User
from portal.cases import operations
from portal.cases.access import view_of
from portal.cases.models import Case
from portal.cases.states import State
from portal.errors import NotFound
from portal.extensions import db
from portal.oncall.pages import send_link


def find_case(user: User, number: str) -> Case:
    """Return the case ``number`` if ``user`` may act on it.

    :raise NotFound: no such case, or nothing of it is offered to or held by ``user``
        (one answer for both, so case numbers cannot be probed).
    """
    case = db.session.scalars(select(Case).where(Case.number == number.strip().upper())).first()
    if case is None or view_of(user, case) is None:
        raise NotFound(f"No case {number.strip().upper()} is offered to you.")
    return case


def accept_page(user: User, number: str, via: str) -> Case:
    """Accept the read or overread offered to ``user``; the link follows on ``via``.

    :raise CaseTaken: someone else accepted first.
    :raise NotFound: the case is not offered to ``user``.
    """
    case = find_case(user, number)
    try:
        if case.state == State.OVERREAD_REQUESTED:
            case = operations.accept_overread(case.id, user)
        else:
            case = operations.accept_case(case.id, user)
        send_link(case, user, via)
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return case


def decline_page(user: User, number: str) -> Case:
    """Decline an offer; escalation moves on at once when nobody else may still accept."""
    case = find_case(user, number)
    try:
        case = operations.decline_case(case.id, user)
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return case


def reissue_link(user: User, number: str, via: str) -> Case:
    """Send a fresh viewing link for a case ``user`` holds (the read or the overread).

    :raise NotFound: ``user`` does not hold the case now.
    """
    case = find_case(user, number)
    if user.id not in (case.assignee_id, case.overreader_id) or case.state in (
        State.CLOSED,
        State.CANCELLED,
    ):
        raise NotFound(f"You do not hold case {case.number}.")
    send_link(case, user, via)
    db.session.commit()
    return case


def held_cases(user: User) -> list[Case]:
    """Open cases ``user`` reads or overreads, newest first."""
    return db.session.scalars(
        select(Case)
        .where(
            (Case.assignee_id == user.id) | (Case.overreader_id == user.id),
            Case.state.not_in((State.CLOSED, State.CANCELLED)),
        )
        .order_by(Case.id.desc())
    ).all()
