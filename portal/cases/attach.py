"""Studies that arrive for a case after it was submitted (a node pushing to a case's AE title)."""

from __future__ import annotations

import logging

from sqlalchemy import select

from portal.audit.operations import record
from portal.auth.models import User
from portal.cases.models import CaseStudy
from portal.cases.reading_copies import make_reading_copies
from portal.cases.states import OPEN_STATES
from portal.cases.transitions import lock_case
from portal.extensions import db
from portal.studies.models import Study

logger = logging.getLogger(__name__)


def attach_studies(case_id: int, study_uids: set[str], owner: User) -> int:
    """Attach ``owner``'s studies with these UIDs to the open case; return how many were new.

    De-identified cases get their reading copies first (that commits). The
    caller commits the links and their audit event.
    """
    studies = db.session.scalars(
        select(Study).where(Study.study_instance_uid.in_(study_uids), Study.owner_id == owner.id)
    ).all()
    case = lock_case(case_id)
    known = {link.study_id for link in case.studies}
    fresh = [study for study in studies if study.id not in known]
    if not fresh:
        return 0
    if case.state not in OPEN_STATES:
        record("case.attach_refused", None, case_id=case.id, target=case.number, state=case.state)
        logger.warning(
            "case %s is %s: %d pushed studies not attached", case.id, case.state, len(fresh)
        )
        return 0
    copies = {}
    if case.deidentify:
        copies = make_reading_copies(fresh, owner, case.number)
        case = lock_case(case_id)
    for study in fresh:
        case.studies.append(CaseStudy(study_id=study.id, reading_study_id=copies.get(study.id)))
    record(
        "case.studies_attached",
        None,
        case_id=case.id,
        target=case.number,
        studies=[study.id for study in fresh],
    )
    return len(fresh)
