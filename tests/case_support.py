"""Build cases for tests through the real operations: a study ingested, a case submitted."""

from __future__ import annotations

from pydicom.data import get_testdata_file
from sqlalchemy import select

from portal.auth.models import User
from portal.cases import operations
from portal.cases.models import Case
from portal.cases.states import Urgency
from portal.extensions import db
from portal.studies.ingest import ingest_file
from portal.studies.models import Study

CONSENT = "I agree that Overread shares my images and history with the reading radiologist."


def ingest_sample(owner: User, name: str = "CT_small.dcm") -> int:
    """Ingest one of pydicom's test files for ``owner`` (in an app context); return the study id."""
    result = ingest_file(get_testdata_file(name), owner)
    assert result.status.value in ("accepted", "duplicate"), result.reason

    return db.session.scalar(
        select(Study.id).where(Study.study_instance_uid == result.study_instance_uid)
    )


def submit(app, requester: User, *, sample: str = "CT_small.dcm", **fields) -> Case:
    """Ingest a sample study for ``requester``, submit a case on it; return it detached."""
    with app.app_context():
        requester = db.session.merge(requester)
        study_id = ingest_sample(requester, sample)
        defaults = {
            "clinical_question": "Is there a pulmonary embolism?",
            "urgency": Urgency.URGENT,
            "study_ids": [study_id],
            "subject_name": "Jane Roe" if requester.role == "physician" else "",
            "consent_text": CONSENT if requester.role == "patient" else None,
        }
        case = operations.submit_case(requester, operations.CaseRequest(**{**defaults, **fields}))
        db.session.commit()
        return _detached(case)


def offer(app, case: Case, *radiologists: User, by: User | None = None) -> Case:
    with app.app_context():
        users = [db.session.merge(r) for r in radiologists]
        actor = db.session.merge(by) if by is not None else None
        updated = operations.offer_case(case.id, users, actor)
        db.session.commit()
        return _detached(updated)


def accept(app, case: Case, radiologist: User) -> Case:
    with app.app_context():
        updated = operations.accept_case(case.id, db.session.merge(radiologist))
        db.session.commit()
        return _detached(updated)


def load(app, case: Case | int) -> Case:
    """Return a fresh, detached copy of the case with its offers and events loaded."""
    with app.app_context():
        fresh = db.session.get(Case, getattr(case, "id", case))
        return _detached(fresh)


def _detached(case: Case) -> Case:
    db.session.refresh(case)
    for relation in (case.offers, case.events, case.studies, case.attachments):
        list(relation)
    case.requester, case.assignee, case.overreader  # noqa: B018 - load before detaching
    db.session.expunge_all()
    return case
