"""The buttons of the case page: each is a POST that makes one move, commits and goes back.

The operations check every move against the state machine; a move that is not
possible now (``IllegalMove``) or not this user's to make (``PermissionDenied``)
becomes an error page through the error hierarchy. Losing an accept race is
not an error of the user's: it comes back as a message on their case list.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from flask import Blueprint, flash, redirect, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from sqlalchemy import select

from portal.auth.models import Role, User
from portal.cases import operations
from portal.cases.access import get_case
from portal.cases.forms import (
    ActionForm,
    AssignForm,
    CancelForm,
    DeclineForm,
    OverreadRequestForm,
)
from portal.cases.models import Case, Offer
from portal.cases.operations import CaseTaken
from portal.cases.states import State
from portal.errors import InvalidInput, NotFound
from portal.extensions import db
from portal.security import role_required

bp = Blueprint("actions", __name__)


def action_forms(case: Case, actions: set[str]) -> dict[str, FlaskForm]:
    """Return the forms of the buttons the case page shows for ``actions``."""
    forms: dict[str, FlaskForm] = {
        "action": ActionForm(),
        "decline": DeclineForm(),
        "cancel": CancelForm(),
        "overread": OverreadRequestForm(),
    }
    if actions & {"offer", "offer_overread", "reassign"}:
        forms["assign"] = AssignForm(operations.active_radiologists(), _assign_labels(case))
    return forms


def _assign_labels(case: Case) -> dict[int, str]:
    labels = {offer.radiologist_id: " (offered)" for offer in case.open_offers()}
    for user_id, label in (
        (case.assignee_id, " (reading)"),
        (case.overreader_id, " (overreading)"),
    ):
        if user_id is not None:
            labels[user_id] = label
    return labels


def _user() -> User:
    return current_user._get_current_object()


def _back(case: Case):
    return redirect(url_for("cases.show", number=case.number))


def _move(case: Case, make: Callable[[], object], done: str):
    """Make a move on ``case``, commit, say so, and go back to the case page."""
    try:
        make()
    except InvalidInput as exc:
        db.session.rollback()
        flash(str(exc), "error")
    else:
        db.session.commit()
        flash(done, "success")
    return _back(case)


def _note(form: DeclineForm | CancelForm | OverreadRequestForm) -> str | None:
    """Return the form's note, or ``None`` (and a message) if it is too long."""
    if not form.validate_on_submit():
        flash("Write a note of at most 500 characters.", "error")
        return None
    return form.note()


# --- offered radiologists -----------------------------------------------------------------
def _case_offered_to(user: User, number: str) -> Case:
    """Return the case if it was ever offered to ``user`` (so a lost race can be told)."""
    case = db.session.scalars(
        select(Case)
        .join(Offer, Offer.case_id == Case.id)
        .where(Case.number == number.upper(), Offer.radiologist_id == user.id)
    ).first()
    if case is None:
        raise NotFound("No such case.")
    return case


@bp.post("/<number>/accept")
@role_required(Role.RADIOLOGIST)
def accept(number: str):
    user = _user()
    case = _case_offered_to(user, number)
    overread = case.state == State.OVERREAD_REQUESTED
    accept_move = operations.accept_overread if overread else operations.accept_case
    try:
        accept_move(case.id, user)
    except CaseTaken as exc:
        db.session.rollback()
        flash(f"{exc} Nothing more is needed from you.", "error")
        return redirect(url_for("cases.index"))
    db.session.commit()
    flash(f"You accepted case {case.number}{' for overread' if overread else ''}.", "success")
    return _back(case)


@bp.post("/<number>/decline")
@role_required(Role.RADIOLOGIST)
def decline(number: str):
    user = _user()
    case = _case_offered_to(user, number)
    reason = _note(DeclineForm())
    if reason is None:
        return _back(case)
    operations.decline_case(case.id, user, reason)
    db.session.commit()
    flash(f"You declined case {case.number}.", "success")
    return redirect(url_for("cases.index"))


# --- requesters and admins ------------------------------------------------------------
@bp.post("/<number>/cancel")
@login_required
def cancel(number: str):
    user = _user()
    case, _ = get_case(user, number)
    reason = _note(CancelForm())
    if reason is None:
        return _back(case)
    return _move(
        case,
        partial(operations.cancel_case, case.id, user, reason),
        f"Case {case.number} is cancelled.",
    )


@bp.post("/<number>/close")
@login_required
def close(number: str):
    user = _user()
    case, _ = get_case(user, number)
    return _move(
        case, partial(operations.close_case, case.id, user), f"Case {case.number} is closed."
    )


@bp.post("/<number>/request-overread")
@login_required
def request_overread(number: str):
    user = _user()
    case, _ = get_case(user, number)
    note = _note(OverreadRequestForm())
    if note is None:
        return _back(case)
    return _move(
        case,
        partial(operations.request_overread, case.id, user, note),
        f"An overread of case {case.number} is requested.",
    )


# --- admins -----------------------------------------------------------------------------------
@bp.post("/<number>/reopen")
@role_required(Role.ADMIN)
def reopen(number: str):
    user = _user()
    case, _ = get_case(user, number)
    return _move(
        case,
        partial(operations.reopen_case, case.id, user),
        f"Case {case.number} is reopened with a fresh SLA clock.",
    )


@bp.post("/<number>/<any(offer, reassign):how>")
@role_required(Role.ADMIN)
def assign(number: str, how: str):
    user = _user()
    case, _ = get_case(user, number)
    radiologists = operations.active_radiologists()
    form = AssignForm(radiologists)
    if not form.validate_on_submit():
        flash(" ".join(form.radiologists.errors) or "Choose radiologists.", "error")
        return _back(case)
    chosen = [r for r in radiologists if r.id in set(form.radiologists.data)]
    if how == "offer":
        make = partial(operations.offer_case, case.id, chosen, user)
    else:
        make = partial(operations.reassign_case, case.id, user, chosen)
    return _move(case, make, f"Case {case.number} is {how}ed.")
