"""Write and sign reports, addenda and overreads.

A draft belongs to its author and changes freely until it is signed. Signing
asks for the author's password or current TOTP code again, then freezes the
row (time, method, content hash) and makes the case's move in the same
transaction: ``sign_report`` for the read, ``sign_overread`` for an overread;
an addendum moves nothing but tells the requester. As everywhere in the
portal, operations never commit: the caller does, also after a refused
signature, so the failure count and its audit row are kept.
"""

from __future__ import annotations

from collections.abc import Mapping

from portal import clock
from portal.audit.operations import record
from portal.auth import operations as auth_operations
from portal.auth.models import User
from portal.cases import notify, transitions
from portal.cases.models import Case
from portal.cases.states import State
from portal.errors import AuthenticationFailed, Conflict, InvalidInput, PermissionDenied
from portal.extensions import db
from portal.reports.content import Missing, clean_fields, content_hash, missing_for_signing
from portal.reports.models import Kind, Report
from portal.reports.queries import draft_of, signed_report

#: The case move each kind of signature makes (an addendum makes none).
MOVES = {Kind.REPORT: "sign_report", Kind.OVERREAD: "sign_overread"}
SIGNED_ACTIONS = {
    Kind.REPORT: "report.signed",
    Kind.ADDENDUM: "report.addendum_signed",
    Kind.OVERREAD: "report.overread_signed",
}


class ReportSigned(Conflict):
    """The report is signed; it is never changed, only followed by addenda."""

    title = "Already signed"


class IncompleteReport(InvalidInput):
    """Something the signature needs is not written yet."""

    def __init__(self, missing: list[Missing]) -> None:
        super().__init__(" ".join(item.message for item in missing))
        self.missing = missing


def require_may_write(case: Case, user: User, kind: Kind) -> None:
    """Check that ``user`` may write a ``kind`` on ``case`` now.

    :raise PermissionDenied: the user is not the one to write it.
    :raise Conflict: the case is not in a state that takes it.
    """
    state = case.state_enum
    if kind == Kind.REPORT:
        if user.id != case.assignee_id:
            raise PermissionDenied(f"Only the radiologist reading case {case.number} reports it.")
        if state != State.ACCEPTED:
            raise Conflict(f"Case {case.number} is {state.label}; its report cannot be written.")
    elif kind == Kind.OVERREAD:
        if user.id != case.overreader_id:
            raise PermissionDenied(f"Only the overreader of case {case.number} writes it.")
        if state != State.OVERREAD_REQUESTED:
            raise Conflict(f"Case {case.number} is {state.label}; no overread is asked for.")
    else:
        report = signed_report(case)
        if report is None or state == State.CANCELLED:
            raise Conflict(f"Case {case.number} has no signed report to add to.")
        if user.id not in (report.author_id, case.assignee_id):
            raise PermissionDenied("Only the report's author adds addenda to it.")


def may_write(case: Case, user: User, kind: Kind) -> bool:
    """Tell whether ``user`` may write a ``kind`` on ``case`` now."""
    try:
        require_may_write(case, user, kind)
    except (PermissionDenied, Conflict):
        return False
    return True


def start_draft(case: Case, user: User, kind: Kind) -> Report:
    """Return ``user``'s open ``kind`` draft on ``case``, starting one if there is none.

    Addenda and overreads follow the signed report (their ``parent``).
    """
    require_may_write(case, user, kind)
    draft = draft_of(case, user, kind)
    if draft is not None:
        return draft
    parent = None if kind == Kind.REPORT else signed_report(case)
    draft = Report(case_id=case.id, kind=kind, author_id=user.id, parent=parent)
    db.session.add(draft)
    db.session.flush()
    record("report.draft_started", user, case_id=case.id, target=f"report:{draft.id}", kind=kind)
    return draft


def save_draft(report: Report, user: User, data: Mapping[str, object]) -> Report:
    """Store the fields of ``data`` that the report's kind is written in.

    :raise ReportSigned: the report is signed.
    :raise PermissionDenied: ``user`` is not its author, or no longer may write it.
    :raise InvalidInput: a field is malformed or too long.
    """
    _require_open_draft(report, user)
    require_may_write(report.case, user, Kind(report.kind))
    fields = clean_fields(report.kind, data)
    for name, value in fields.items():
        setattr(report, name, value)
    report.updated_at = clock.now()
    return report


def _require_open_draft(report: Report, user: User) -> None:
    if report.signed:
        raise ReportSigned("This is signed and cannot be changed. Add an addendum instead.")
    if report.author_id != user.id:
        raise PermissionDenied("Only its author may change this draft.")


def sign(report: Report, user: User, *, password: str = "", code: str = "") -> Report:
    """Sign ``report`` after checking ``user``'s password or TOTP code; make the case's move.

    :raise IncompleteReport: the impression, agreement or text is missing.
    :raise AuthenticationFailed: wrong password or code (audited ``report.sign_failed``;
        the caller commits so the failure counts toward the lockout).
    :raise ReportSigned, PermissionDenied, Conflict: see :func:`save_draft`.
    """
    case = transitions.lock_case(report.case_id)
    _require_open_draft(report, user)
    require_may_write(case, user, Kind(report.kind))
    missing = missing_for_signing(report)
    if missing:
        raise IncompleteReport(missing)
    move = transitions.find_move(case, MOVES[report.kind], user) if report.kind in MOVES else None
    method = _reauthenticate(report, user, password, code)
    _seal(report, case, method)
    if report.kind == Kind.REPORT:
        case.reported_at = report.signed_at
    if move is not None:
        transitions.record_move(case, move, user)
    else:
        news = f"An addendum to the report on case {case.number} is signed and ready to read."
        notify.tell_requester(case, f"addendum-{report.id}", news)
    record(
        SIGNED_ACTIONS[report.kind],
        user,
        case_id=case.id,
        target=f"report:{report.id}",
        signed_with=method,
        content_hash=report.content_hash,
    )
    return report


def _seal(report: Report, case: Case, method: str) -> None:
    """Set the signing time, method and content hash, all before the next flush.

    The guard in :mod:`portal.reports.models` freezes a row once it is flushed
    signed, so nothing may flush between setting ``signed_at`` and the hash.
    The time is kept to the second: it is hashed as ISO text and must read back
    the same from every database.
    """
    now = clock.now().replace(microsecond=0)
    with db.session.no_autoflush:
        report.signed_at, report.signed_with, report.updated_at = now, method, now
        report.content_hash = content_hash(report, case.number)


def _reauthenticate(report: Report, user: User, password: str, code: str) -> str:
    """Check the signer again (counted toward the lockout); return ``"password"`` or ``"totp"``."""
    try:
        return auth_operations.reauthenticate(user, password, code)
    except AuthenticationFailed:
        record(
            "report.sign_failed",
            user,
            case_id=report.case_id,
            target=f"report:{report.id}",
            method="totp" if code.strip() else "password",
        )
        raise
