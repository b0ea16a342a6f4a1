"""Write and sign reports for tests through the real operations."""

from __future__ import annotations

from portal.auth.models import User
from portal.cases import operations as case_operations
from portal.cases.models import Case
from portal.extensions import db
from portal.reports import operations
from portal.reports.models import Kind, Report
from tests import case_support as cs
from tests.conftest import PASSWORD

REPORT_TEXT = {
    "findings": "No filling defect in the pulmonary arteries.",
    "impression": "No pulmonary embolism.",
    "recommendations": "No further imaging needed.",
    "agreement": "agree",
}
TEXT = {
    Kind.REPORT: REPORT_TEXT,
    Kind.ADDENDUM: {"comments": "Incidental 4 mm nodule in the right upper lobe."},
    Kind.OVERREAD: {"agreement": "minor_discrepancy", "comments": "The nodule measures 6 mm."},
}


def accepted_case(app, requester: User, radiologist: User, **fields) -> Case:
    """Submit a case for ``requester`` and have ``radiologist`` accept it; return it detached."""
    case = cs.submit(app, requester, **fields)
    return cs.accept(app, cs.offer(app, case, radiologist), radiologist)


def sign(app, case: Case, author: User, kind: Kind = Kind.REPORT, **fields) -> Report:
    """Draft and sign a ``kind`` by ``author`` with their password; return it detached."""
    with app.app_context():
        user = db.session.merge(author)
        stored = db.session.get(Case, case.id)
        draft = operations.start_draft(stored, user, kind)
        operations.save_draft(draft, user, {**TEXT[kind], **fields})
        operations.sign(draft, user, password=PASSWORD)
        db.session.commit()
        db.session.refresh(draft)
        draft.author  # noqa: B018 - load before detaching
        db.session.expunge_all()
        return draft


def assign_overread(app, case: Case, requester: User, admin: User, overreader: User) -> Case:
    """Ask for an overread as ``requester``; ``admin`` offers it, ``overreader`` accepts."""
    with app.app_context():
        case_operations.request_overread(case.id, db.session.merge(requester), "Please review.")
        case_operations.offer_case(case.id, [db.session.merge(overreader)], db.session.merge(admin))
        case_operations.accept_overread(case.id, db.session.merge(overreader))
        db.session.commit()
    return cs.load(app, case)
