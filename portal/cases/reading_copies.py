"""De-identified copies of a case's studies, for a requester who asked for de-identified reading.

Each instance blob goes back through the one ingest path with the case's
de-identification scope, so the copy gets PS3.15 Basic Profile treatment,
consistent replacement UIDs within the case and a stored mapping back to the
original. Make the copies before the case row is committed: a radiologist
never sees a de-identified case without them.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from flask import current_app
from sqlalchemy import select

from portal.auth.models import User
from portal.errors import InvalidInput
from portal.extensions import db
from portal.storage import get_storage
from portal.studies.ingest import IngestStatus, ingest_file, record_ingest
from portal.studies.models import Instance, Series, Study

STORED = (IngestStatus.ACCEPTED, IngestStatus.DUPLICATE)


def scope_for(case_number: str) -> str:
    return f"case-{case_number}"


def make_reading_copies(studies: list[Study], owner: User, case_number: str) -> dict[int, int]:
    """Store a de-identified copy of each study; return ``{study id: copy id}``; commits.

    :raise InvalidInput: an instance could not be de-identified (nothing is attached then).
    """
    copies = {}
    for study in studies:
        copies[study.id] = _copy_study(study, owner, scope_for(case_number))
    return copies


def _copy_study(study: Study, owner: User, scope: str) -> int:
    keys = db.session.scalars(
        select(Instance.storage_key)
        .join(Series)
        .where(Series.study_id == study.id)
        .order_by(Instance.id)
    ).all()
    original_uid = study.study_instance_uid
    db.session.commit()  # ingest wants a clean session
    results = [_copy_instance(key, owner, original_uid, scope) for key in keys]
    record_ingest(results, owner, via="deid")
    failed = [r for r in results if r.status not in STORED]
    if failed or not results:
        reason = failed[0].reason if failed else "the study has no instances"
        raise InvalidInput(f"A study could not be de-identified: {reason}")
    copy_uid = results[0].study_instance_uid
    return db.session.scalar(select(Study.id).where(Study.study_instance_uid == copy_uid))


def _copy_instance(key: str, owner: User, original_uid: str, scope: str):
    spool = Path(current_app.config["SPOOL_DIR"])
    spool.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=spool, prefix="reading-copy-", suffix=".dcm") as temp:
        with get_storage().open(key) as blob:
            shutil.copyfileobj(blob, temp, 1 << 20)
        temp.flush()
        return ingest_file(
            temp.name,
            owner,
            via="deid",
            audit=False,
            expected_study_uid=original_uid,
            deidentify_scope=scope,
        )
