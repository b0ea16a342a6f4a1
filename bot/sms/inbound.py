"""Act on an SMS from a radiologist and word the answer.

The sender is found by the verified mobile of a paging profile. Acting goes
through :mod:`portal.oncall.answers`, as the Slack bot's buttons do. Answers
carry case codes, states and deadlines, never patient details. A number that
is unknown, unverified or not entitled to the case gets one plain refusal,
audited as ``sms.refused`` with the number masked.

Case codes arrive upper-cased by :func:`~bot.sms.replies.parse_reply`. A YES,
NO, LINK or STATUS without one is taken to mean the one case that fits (the
one open offer, the one case held); with several, the answer asks which.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, select

from bot.sms.numbers import mask_number
from bot.sms.replies import Command, Instruction, parse_reply
from portal import clock
from portal.audit.operations import record, record_now
from portal.auth.models import User
from portal.cases.models import Case, Offer
from portal.cases.operations import CaseTaken
from portal.cases.states import OfferStatus
from portal.cases.summary import summarize
from portal.errors import Conflict, NotFound, PermissionDenied
from portal.extensions import db
from portal.oncall import answers
from portal.oncall.models import PagingProfile

logger = logging.getLogger(__name__)

REFUSAL = "This number cannot act on that case."
HELP_TEXT = (
    "Overread: reply YES <case> to accept, NO <case> to decline, LINK <case> for a new "
    "viewing link, STATUS <case> for its state. STOP ends SMS pages."
)
NOT_UNDERSTOOD = "Sorry, that reply was not understood. " + HELP_TEXT
STOPPED = "Overread will send no more SMS pages to this number. Reply START to resume."
STARTED = "Overread SMS pages are on again for this number."
FAILED = "Sorry, Overread could not act on that just now. Please try again."


@dataclass(frozen=True)
class Sender:
    user: User
    profile: PagingProfile
    number: str


class Ask(Exception):
    """No case code was given and none can be assumed; the message asks for one."""


def answer_sms(number: str, body: str) -> str | None:
    """Carry out the SMS ``body`` received from ``number``; return the reply, or ``None``."""
    instruction = parse_reply(body)
    profile = db.session.scalars(
        select(PagingProfile).where(PagingProfile.mobile == number.strip())
    ).first()
    if instruction.command in (Command.STOP, Command.START):
        return switch_sms(profile, instruction, number)
    if instruction.command is Command.HELP:
        return HELP_TEXT
    refused_because = _why_not_entitled(profile)
    if refused_because:
        return refuse(number, refused_because, instruction.command, instruction.code)
    if instruction.command is Command.UNKNOWN:
        return NOT_UNDERSTOOD
    sender = Sender(profile.user, profile, number)
    try:
        return HANDLERS[instruction.command](sender, instruction.code)
    except Ask as question:
        return str(question)


def _why_not_entitled(profile: PagingProfile | None) -> str | None:
    if profile is None:
        return "unknown number"
    if profile.mobile_verified_at is None:
        return "unverified number"
    if not profile.user.active:
        return "inactive account"
    return None


def refuse(
    number: str, reason: str, command: Command, code: str | None, user: User | None = None
) -> str:
    """Audit a refused SMS (number masked) and return the refusal."""
    record_now(
        "sms.refused",
        user,
        target=code,
        number=mask_number(number),
        command=command.value,
        reason=reason,
    )
    logger.info("SMS from %s refused: %s", mask_number(number), reason)
    return REFUSAL


def switch_sms(profile: PagingProfile | None, instruction: Instruction, number: str) -> str | None:
    """Honour STOP or START: no SMS pages to this number while stopped.

    Twilio answers a bare keyword itself (and blocks our replies after STOP),
    so only a keyword with more words after it gets our own confirmation.
    """
    stopping = instruction.command is Command.STOP
    if profile is not None:
        profile.sms_stopped_at = (profile.sms_stopped_at or clock.now()) if stopping else None
        record(
            "sms.stopped" if stopping else "sms.started", profile.user, number=mask_number(number)
        )
        db.session.commit()
    logger.info("SMS %s from %s", "STOP" if stopping else "START", mask_number(number))
    if instruction.carrier_keyword:
        return None
    return STOPPED if stopping else STARTED


# --- the commands -----------------------------------------------------------------
def accept(sender: Sender, code: str | None) -> str:
    code = code or _the_only(_offered(sender.user), "YES", "accept")
    try:
        case = answers.accept_page(sender.user, code, via="sms")
    except CaseTaken:
        return _taken(code)
    except Conflict:
        return _cannot_now(sender, code, "accepted")
    except (NotFound, PermissionDenied) as exc:
        return _answered_offer(sender.user, code) or _refuse(sender, Command.ACCEPT, code, exc)
    return f"Accepted case {case.number}. Your viewing link follows."


def decline(sender: Sender, code: str | None) -> str:
    code = code or _the_only(_offered(sender.user), "NO", "decline")
    try:
        case = answers.decline_page(sender.user, code)
    except Conflict:
        return _cannot_now(sender, code, "declined")
    except (NotFound, PermissionDenied) as exc:
        return _answered_offer(sender.user, code) or _refuse(sender, Command.DECLINE, code, exc)
    return f"Declined case {case.number}. Thank you."


def reissue_link(sender: Sender, code: str | None) -> str:
    held = [case.number for case in answers.held_cases(sender.user)]
    code = code or _the_only(held, "LINK", "open")
    try:
        case = answers.reissue_link(sender.user, code, via="sms")
    except (NotFound, PermissionDenied) as exc:
        return _refuse(sender, Command.LINK, code, exc)
    return f"A new viewing link for case {case.number} follows."


def status(sender: Sender, code: str | None) -> str:
    mine = [case.number for case in answers.held_cases(sender.user)] + _offered(sender.user)
    code = code or _the_only(mine, "STATUS", "ask about")
    try:
        case = answers.find_case(sender.user, code)
    except NotFound as exc:
        return _refuse(sender, Command.STATUS, code, exc)
    if case.reported_at is not None:
        report = "Report signed."
    else:
        report = f"Report due {_deadline(case.sla_due_at, sender.profile.timezone)}."
    return f"Case {case.number}: {case.state_enum.label}, {summarize(case).headline}. {report}"


HANDLERS: dict[Command, Callable[[Sender, str | None], str]] = {
    Command.ACCEPT: accept,
    Command.DECLINE: decline,
    Command.LINK: reissue_link,
    Command.STATUS: status,
}


# --- helpers ----------------------------------------------------------------------
def _offered(user: User) -> list[str]:
    """Numbers of the cases with an open offer to ``user``, oldest offer first."""
    return list(
        db.session.scalars(
            select(Case.number)
            .join(Offer, Offer.case_id == Case.id)
            .where(Offer.radiologist_id == user.id, Offer.status == OfferStatus.OPEN)
            .group_by(Case.number)
            .order_by(func.min(Offer.id))
        )
    )


def _the_only(numbers: list[str], word: str, verb: str) -> str:
    """Return the one case number of ``numbers``; otherwise ask for a code.

    :raise Ask: none, or several, to choose from.
    """
    unique = list(dict.fromkeys(numbers))
    if len(unique) == 1:
        return unique[0]
    if not unique:
        raise Ask(f"You have no case to {verb}.")
    shown = ", ".join(unique[:5]) + (", ..." if len(unique) > 5 else "")
    raise Ask(f"Which case? Reply {word} and the case code: {shown}.")


def _answered_offer(user: User, code: str) -> str | None:
    """Say what became of the offer of case ``code`` to ``user``, if there was one."""
    status = db.session.scalar(
        select(Offer.status)
        .join(Case, Case.id == Offer.case_id)
        .where(Case.number == code, Offer.radiologist_id == user.id)
        .order_by(Offer.id.desc())
        .limit(1)
    )
    if status == OfferStatus.TAKEN:
        return _taken(code)
    if status == OfferStatus.DECLINED:
        return f"You declined case {code}."
    if status == OfferStatus.WITHDRAWN:
        return f"Case {code} is no longer offered to you."
    return None


def _taken(code: str) -> str:
    return f"Case {code} was already taken by another radiologist."


def _cannot_now(sender: Sender, code: str, done: str) -> str:
    """Answer a move the case's state does not allow (already accepted by this user, say)."""
    db.session.rollback()
    if code in (case.number for case in answers.held_cases(sender.user)):
        return f"You already hold case {code}. Reply LINK {code} for a viewing link."
    return f"Case {code} cannot be {done} now."


def _refuse(sender: Sender, command: Command, code: str, exc: Exception) -> str:
    db.session.rollback()
    reason = (
        "not allowed" if isinstance(exc, PermissionDenied) else "not offered to or held by user"
    )
    return refuse(sender.number, reason, command, code, sender.user)


def _deadline(due: datetime, timezone: str) -> str:
    """``"14:05 UTC (in 42 min)"`` or ``"3 May 09:00 CEST (12 min late)"``, in ``timezone``."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    now = clock.now()
    local = due.astimezone(zone)
    when = local.strftime("%H:%M %Z")
    if local.date() != now.astimezone(zone).date():
        when = f"{local.day} {local:%b} {when}"
    minutes = round(abs((due - now).total_seconds()) / 60)
    span = f"{minutes} min" if minutes < 120 else f"{minutes // 60} h {minutes % 60} min"
    return f"{when} ({'in ' + span if due >= now else span + ' late'})"
