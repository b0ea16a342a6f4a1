"""Write the study index: find or create the patient, study and series of an instance.

Two ingests of one study may run at once (two browser tabs, a STOW-RS client
with parallel requests). Each parent row is looked up first and inserted
inside a savepoint; the loser of a race meets the unique constraint, rolls the
savepoint back and reads the winner's row.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from portal.extensions import db
from portal.studies.headers import InstanceHeader
from portal.studies.models import TEXT_LENGTH, Instance, Patient, Series, Study
from portal.studies.policy import IngestRejected
from portal.studies.spool import SpooledFile

Row = TypeVar("Row", Patient, Study, Series)

FOREIGN_STUDY = (
    "this study was uploaded by another account; ask its owner to share it"
    " rather than uploading it again"
)


def find_instance(sop_instance_uid: str) -> Instance | None:
    """Return the stored instance with this SOP Instance UID, if any."""
    return db.session.scalars(
        select(Instance).where(Instance.sop_instance_uid == sop_instance_uid)
    ).first()


def add_instance(
    header: InstanceHeader, owner_id: int, blob: SpooledFile, storage_key: str
) -> Instance:
    """Add an instance row, and the parent rows it needs, to the session; flush it.

    The caller commits, or rolls back and removes the blob.

    :raise IngestRejected: the study belongs to another account.
    :raise IntegrityError: another ingest committed this SOP Instance UID first.
    """
    series = _series(header, _study(header, owner_id))
    instance = Instance(
        sop_instance_uid=header.sop_instance_uid,
        sop_class_uid=header.sop_class_uid,
        instance_number=header.instance_number,
        transfer_syntax_uid=header.transfer_syntax_uid,
        rows=header.rows,
        columns=header.columns,
        number_of_frames=header.number_of_frames,
        size_bytes=blob.size,
        sha256=blob.sha256,
        storage_key=storage_key,
        series=series,
    )
    db.session.add(instance)
    db.session.flush()
    return instance


def _study(header: InstanceHeader, owner_id: int) -> Study:
    study = db.session.scalars(
        select(Study).where(Study.study_instance_uid == header.study_instance_uid)
    ).first()
    if study is None:
        patient = _get_or_create(
            Patient,
            {"owner_id": owner_id, "patient_id": header.patient_id, "name": header.patient_name},
            birth_date=header.patient_birth_date,
            sex=header.patient_sex,
        )
        study = _get_or_create(
            Study,
            {"study_instance_uid": header.study_instance_uid},
            owner_id=owner_id,
            patient_id=patient.id,
            study_date=header.study_date,
            study_time=header.study_time,
            description=header.study_description,
            accession_number=header.accession_number,
            referring_physician=header.referring_physician,
        )
    if study.owner_id != owner_id:
        raise IngestRejected(FOREIGN_STUDY)
    return study


def _series(header: InstanceHeader, study: Study) -> Series:
    series = _get_or_create(
        Series,
        {"study_id": study.id, "series_instance_uid": header.series_instance_uid},
        modality=header.modality,
        body_part=header.body_part,
        description=header.series_description,
        series_number=header.series_number,
    )
    _add_modality(study, header.modality)
    return series


def _get_or_create(model: type[Row], key: dict[str, Any], **values: Any) -> Row:
    """Return the row matching ``key``, inserting it with ``values`` if there is none."""
    row = _find(model, key)
    if row is not None:
        return row
    try:
        with db.session.begin_nested():
            row = model(**key, **values)
            db.session.add(row)
    except IntegrityError:  # another ingest inserted it since we looked
        found = _find(model, key)
        if found is None:
            raise
        return found
    return row


def _find(model: type[Row], key: dict[str, Any]) -> Row | None:
    return db.session.scalars(select(model).filter_by(**key)).first()


def _add_modality(study: Study, modality: str) -> None:
    """Add ``modality`` to the study's Modalities in Study, under a row lock."""
    if not modality or modality in study.modalities:
        return
    locked = db.session.scalars(
        select(Study)
        .where(Study.id == study.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    joined = "\\".join([*locked.modalities, modality])
    if modality not in locked.modalities and len(joined) <= TEXT_LENGTH:
        locked.modalities_in_study = joined
