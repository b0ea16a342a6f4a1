"""Every move a case can make, who may make it, and the one function that makes it.

:data:`MOVES` is the whole state machine. :func:`apply` checks a move against
it, changes the state, writes the timeline row and the audit event, and has
:mod:`portal.cases.notify` put the notifications into the outbox, all in the
caller's transaction. Lock the case first (:func:`lock_case`), so two moves
of one case never interleave.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sqlalchemy import select

from portal import clock
from portal.audit.operations import record, record_now
from portal.auth.models import Role, User
from portal.cases import notify
from portal.cases.models import Case, CaseEvent
from portal.cases.states import ACTION_LABELS, OfferPurpose, State
from portal.errors import Conflict, NotFound, PermissionDenied
from portal.extensions import db
from portal.links.operations import revoke_for_case


class Party(enum.StrEnum):
    """How an actor stands to a case."""

    REQUESTER = "requester"  # the patient or physician who asked, or the named referrer
    OFFERED = "offered"  # a radiologist with an open offer to read
    OFFERED_OVERREAD = "offered_overread"  # a radiologist with an open offer to overread
    ASSIGNEE = "assignee"  # the radiologist who accepted the read
    OVERREADER = "overreader"  # the radiologist who accepted the overread
    ADMIN = "admin"
    SYSTEM = "system"  # timers and the dispatcher


@dataclass(frozen=True)
class Move:
    action: str
    sources: frozenset[State]
    target: State
    parties: frozenset[Party]
    #: Targets other than ``target`` the move may end in (decline with offers still open).
    alternatives: frozenset[State] = frozenset()


def _move(action, sources, target, parties, alternatives=()) -> Move:
    return Move(action, frozenset(sources), target, frozenset(parties), frozenset(alternatives))


S, P = State, Party
_WAITING = (S.SUBMITTED, S.OFFERED, S.DECLINED)
MOVES: tuple[Move, ...] = (
    _move("offer", (*_WAITING, S.UNASSIGNED), S.OFFERED, (P.ADMIN, P.SYSTEM)),
    _move("accept", (S.OFFERED,), S.ACCEPTED, (P.OFFERED,)),
    _move("decline", (S.OFFERED,), S.DECLINED, (P.OFFERED,), alternatives=(S.OFFERED,)),
    _move("expire", _WAITING, S.UNASSIGNED, (P.SYSTEM,)),
    _move("reassign", (*_WAITING, S.ACCEPTED, S.UNASSIGNED), S.OFFERED, (P.ADMIN,)),
    _move("sign_report", (S.ACCEPTED,), S.REPORTED, (P.ASSIGNEE,)),
    _move(
        "request_overread",
        (S.REPORTED, S.OVERREAD_DONE, S.CLOSED),
        S.OVERREAD_REQUESTED,
        (P.REQUESTER, P.ADMIN),
    ),
    _move("offer_overread", (S.OVERREAD_REQUESTED,), S.OVERREAD_REQUESTED, (P.ADMIN, P.SYSTEM)),
    _move("accept_overread", (S.OVERREAD_REQUESTED,), S.OVERREAD_REQUESTED, (P.OFFERED_OVERREAD,)),
    _move("decline_overread", (S.OVERREAD_REQUESTED,), S.OVERREAD_REQUESTED, (P.OFFERED_OVERREAD,)),
    _move("sign_overread", (S.OVERREAD_REQUESTED,), S.OVERREAD_DONE, (P.OVERREADER,)),
    _move("close", (S.REPORTED, S.OVERREAD_DONE), S.CLOSED, (P.REQUESTER, P.ADMIN)),
    _move("cancel", (*_WAITING, S.UNASSIGNED), S.CANCELLED, (P.REQUESTER, P.ADMIN)),
    _move("cancel", (S.ACCEPTED, S.OVERREAD_REQUESTED), S.CANCELLED, (P.ADMIN,)),
    _move("reopen", (S.CANCELLED, S.UNASSIGNED), S.SUBMITTED, (P.ADMIN,)),
)


class IllegalMove(Conflict):
    """The case's state does not allow this move."""

    title = "Not possible now"


def lock_case(case_id: int) -> Case:
    """Load the case with a row lock (``FOR UPDATE`` on PostgreSQL) and fresh values.

    :raise NotFound: there is no such case.
    """
    case = db.session.scalars(
        select(Case)
        .where(Case.id == case_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if case is None:
        raise NotFound("No such case.")
    return case


def parties(case: Case, user: User | None) -> set[Party]:
    """Return how ``user`` stands to ``case`` (``None`` is the system)."""
    if user is None:
        return {Party.SYSTEM}
    found = set()
    if user.role == Role.ADMIN:
        found.add(Party.ADMIN)
    if user.id in (case.requester_id, case.referring_physician_id):
        found.add(Party.REQUESTER)
    if user.id == case.assignee_id:
        found.add(Party.ASSIGNEE)
    if user.id == case.overreader_id:
        found.add(Party.OVERREADER)
    for offer in case.open_offers():
        if offer.radiologist_id == user.id:
            read = offer.purpose == OfferPurpose.READ
            found.add(Party.OFFERED if read else Party.OFFERED_OVERREAD)
    return found


def find_move(case: Case, action: str, user: User | None) -> Move:
    """Return the move ``user`` may make now.

    :raise IllegalMove: no such move from the case's state.
    :raise PermissionDenied: the move exists, but not for ``user``; the refusal is
        audited in a transaction of its own (the caller's work is rolled back).
    """
    candidates = [m for m in MOVES if m.action == action and case.state in m.sources]
    if not candidates:
        label = ACTION_LABELS.get(action, action)
        raise IllegalMove(f"Case {case.number} is {case.state_enum.label}; it cannot be {label}.")
    mine = parties(case, user)
    for move in candidates:
        if move.parties & mine:
            return move
    case_id, number = case.id, case.number
    record_now("case.move_refused", user, case_id=case_id, target=number, move=action)
    raise PermissionDenied(f"You may not do that to case {number}.")


def apply(
    case: Case, action: str, user: User | None, *, target: State | None = None, **context
) -> Move:
    """Check and make ``action`` on a locked ``case`` (see :func:`record_move`)."""
    return record_move(case, find_move(case, action, user), user, target=target, **context)


def record_move(
    case: Case,
    move: Move,
    user: User | None,
    *,
    target: State | None = None,
    note: str = "",
    **context,
) -> Move:
    """Make a move found by :func:`find_move`: state, timeline, audit and outbox, uncommitted.

    Operations that change the case between the check and the move (an accept
    sets the assignee) call :func:`find_move` first, then this.

    :param target: one of the move's alternatives instead of its usual target.
    :param context: who else the notifications go to (``offered``, ``taken_from``,
        ``withdrawn_from``: lists of users).
    """
    if target is not None and target != move.target and target not in move.alternatives:
        raise ValueError(f"{move.action} cannot end in {target}")
    before = case.state
    case.state = target or move.target
    case.version += 1
    case.updated_at = clock.now()
    actor_id = getattr(user, "id", None)
    case.events.append(
        CaseEvent(
            action=move.action,
            from_state=before,
            to_state=case.state,
            actor_id=actor_id,
            note=note[:500],
        )
    )
    record(
        f"case.{move.action}",
        user,
        case_id=case.id,
        target=case.number,
        before=before,
        after=case.state,
    )
    notify.on_move(case, move.action, user, before, **context)
    if move.action in _ENDS_ACCESS:
        revoke_for_case(case, f"case {move.action}")
    return move


#: Moves after which viewing links and viewer sessions of the case stop working.
_ENDS_ACCESS = frozenset({"reassign", "close", "cancel"})
