"""The notifications each move of a case writes to the outbox.

Requesters get an email for every change, and an SMS too when they gave a
number and opted in. Radiologists get offers and news of cases they hold;
admins get what needs a coordinator. Nothing here names the patient: messages
carry the case number and the facts of :mod:`portal.cases.summary`, and a link
to the case page, where access is checked again.
"""

from __future__ import annotations

from flask import current_app
from sqlalchemy import select

from portal.auth.models import Role, User
from portal.cases.models import Case
from portal.cases.states import ACTION_LABELS
from portal.cases.summary import summarize
from portal.extensions import db
from portal.notifications.operations import enqueue
from portal.oncall import escalation, pages

SIGN_IN_HINT = "Sign in to Overread to see the details."


def case_url(case: Case) -> str:
    return f"{current_app.config['BASE_URL']}/cases/{case.number}"


def on_move(case: Case, action: str, actor: User | None, before: str, **context) -> None:
    """Write the outbox rows for ``action``, just made on ``case``."""
    if action in _STOPS_PAGING:
        pages.stop_paging(case, f"case {_label(action)}")
    if case.state != before or action in _ALWAYS_TELL_REQUESTER:
        tell_requester(case, action, _requester_news(case, action))
    for user in context.get("offered", ()):
        _offer_message(case, user, action)
        pages.page_radiologist(case, user, "overread" if action == "offer_overread" else "read")
    taken_from = context.get("taken_from", ())
    for user in taken_from:
        _tell_user(
            case,
            user,
            f"taken-{action}",
            f"Case {case.number} was taken by another radiologist; nothing more is needed.",
        )
    pages.tell_taken(case, list(taken_from), action)
    _escalate(case, action)
    for user in context.get("withdrawn_from", ()):
        _tell_user(
            case,
            user,
            f"withdrawn-{action}",
            f"Case {case.number} is no longer yours to read ({_label(action)}).",
        )
    if action in _ADMIN_ACTIONS:
        tell_admins(
            case, action, f"Case {case.number} is {case.state_enum.label} and needs a coordinator."
        )
    if action == "sign_overread" and case.assignee is not None:
        _tell_user(case, case.assignee, action, f"Your report on case {case.number} was overread.")


_ALWAYS_TELL_REQUESTER = frozenset({"reassign", "accept_overread"})
_ADMIN_ACTIONS = frozenset({"submit", "decline", "expire", "request_overread", "decline_overread"})
_STOPS_PAGING = frozenset({"accept", "accept_overread", "reassign", "expire", "cancel", "close"})
_STARTS_PAGING = {"submit": "read", "reopen": "read", "request_overread": "overread"}
_DECLINES = {"decline": "read", "decline_overread": "overread"}


def _escalate(case: Case, action: str) -> None:
    """Start paging a new request; after a decline nobody else may take, move on at once."""
    if action in _STARTS_PAGING:
        escalation.start_paging(case, _STARTS_PAGING[action])
    elif action in _DECLINES and not case.open_offers(_DECLINES[action]):
        escalation.move_on_now(case)
    if action == "expire":
        pages.page_admins(case, f"Case {case.number} is unassigned: nobody accepted it.")


def _label(action: str) -> str:
    return ACTION_LABELS.get(action, action)


def _requester_news(case: Case, action: str) -> str:
    if action in ("accept", "accept_overread"):
        who = case.assignee if action == "accept" else case.overreader
        return f"Case {case.number} was accepted by {who.name}."
    if action == "sign_report":
        return f"The report on case {case.number} is signed and ready to read."
    if action == "sign_overread":
        return f"The overread of case {case.number} is signed and ready to read."
    return f"Case {case.number} is now {case.state_enum.label}."


def tell_requester(case: Case, kind: str, news: str) -> None:
    """Email the requester (and SMS them if they opted in) about ``case``."""
    requester = case.requester
    subject = f"Overread case {case.number}: {case.state_enum.label}"
    _email(case, requester, kind, subject, f"{news}\n\n{case_url(case)}\n")
    if case.sms_opt_in and case.notify_phone:
        enqueue(
            channel="sms",
            recipient=case.notify_phone,
            user_id=requester.id,
            case_id=case.id,
            kind=f"case.{kind}",
            body=f"Overread: {news} {SIGN_IN_HINT}",
            idempotency_key=f"case:{case.id}:v{case.version}:{kind}:sms:{requester.id}",
        )


def tell_admins(case: Case, kind: str, news: str) -> None:
    admins = db.session.scalars(
        select(User).where(User.role == Role.ADMIN, User.active.is_(True))
    ).all()
    for admin in admins:
        _tell_user(case, admin, f"admin-{kind}", news)


def _offer_message(case: Case, radiologist: User, action: str) -> None:
    summary = summarize(case)
    what = "overread" if action == "offer_overread" else "read"
    due = summary.sla_due_at.strftime("%Y-%m-%d %H:%M %Z")
    body = (
        f"Case {summary.number} is offered to you to {what}: {summary.headline}, "
        f"{summary.subspecialty}, patient {summary.age_band}. SLA due {due}.\n\n"
        f"Accept or decline: {case_url(case)}\n"
    )
    subject = f"Overread {summary.urgency} case {summary.number} offered"
    _email(case, radiologist, action, subject, body)


def _tell_user(case: Case, user: User, kind: str, news: str) -> None:
    _email(case, user, kind, f"Overread case {case.number}", f"{news}\n\n{case_url(case)}\n")


def _email(case: Case, user: User, kind: str, subject: str, body: str) -> None:
    """Queue one email about ``case``; the key makes a retried move send it once."""
    enqueue(
        channel="email",
        recipient=user.email,
        user_id=user.id,
        case_id=case.id,
        kind=f"case.{kind}",
        subject=subject,
        body=body,
        idempotency_key=f"case:{case.id}:v{case.version}:{kind}:email:{user.id}",
    )
