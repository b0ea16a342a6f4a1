"""Write the study index: find or create the patient, study and series of an instance.

Two ingests of one study may run at once (two browser tabs, a STOW-RS client
with parallel requests). Each parent row is looked up first and inserted
inside a savepoint; the loser of a race meets the unique constraint, rolls the
savepoint back and reads the winner's row. An :class:`IndexWriter` adds a
batch of instances in one transaction, looking each parent row up once and
inserting the instance rows together.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from sqlalchemy import bindparam, select
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


# The statements every ingest runs, built once; those that load no object are on the
# tables, not the mapped classes, so the ORM does not prepare to load any.
_instances, _series, _studies = Instance.__table__, Series.__table__, Study.__table__
_STORED = (
    select(_instances.c.sop_instance_uid, _instances.c.sha256, _studies.c.owner_id)
    .join(_series, _instances.c.series_id == _series.c.id)
    .join(_studies, _series.c.study_id == _studies.c.id)
    .where(_instances.c.sop_instance_uid.in_(bindparam("uids", expanding=True)))
)
_STUDIES = select(Study).where(Study.study_instance_uid.in_(bindparam("uids", expanding=True)))
_SERIES_ID = select(_series.c.id).where(
    _series.c.study_id == bindparam("study_id"),
    _series.c.series_instance_uid == bindparam("series_instance_uid"),
)


def stored_instances(sop_instance_uids: list[str]) -> dict[str, tuple[str, int]]:
    """Return the SHA-256 and the owner's id of each of these instances already stored."""
    rows = db.session.execute(_STORED, {"uids": sop_instance_uids})
    return {uid: (sha256, owner_id) for uid, sha256, owner_id in rows}


class IndexWriter:
    """Add instances to the index within one transaction; the caller commits or rolls back.

    Each study and series is looked up once; the instance rows are inserted
    together by :meth:`flush`. ``studies`` holds the study rows found or made
    so far, by Study Instance UID. Use one writer per transaction.
    """

    def __init__(self, study_instance_uids: Iterable[str]) -> None:
        """Look up the stored studies among ``study_instance_uids``."""
        found = db.session.scalars(_STUDIES, {"uids": sorted(set(study_instance_uids))})
        self.studies: dict[str, Study] = {study.study_instance_uid: study for study in found}
        self._series: dict[tuple[int, str], int] = {}  # series ids
        self._pending: list[dict[str, Any]] = []

    def study_owner(self, study_instance_uid: str) -> int | None:
        """Return the owner's id of a study found or made so far, if any."""
        study = self.studies.get(study_instance_uid)
        return None if study is None else study.owner_id

    def add_instance(
        self, header: InstanceHeader, owner_id: int, blob: SpooledFile, storage_key: str
    ) -> None:
        """Make the parent rows an instance needs, and queue its row for :meth:`flush`.

        A refused instance queues nothing.

        :raise IngestRejected: the study belongs to another account.
        """
        series_id = self._series_of(header, self._study_of(header, owner_id))
        self._pending.append(
            {
                "sop_instance_uid": header.sop_instance_uid,
                "sop_class_uid": header.sop_class_uid,
                "instance_number": header.instance_number,
                "transfer_syntax_uid": header.transfer_syntax_uid,
                "rows": header.rows,
                "columns": header.columns,
                "number_of_frames": header.number_of_frames,
                "size_bytes": blob.size,
                "sha256": blob.sha256,
                "storage_key": storage_key,
                "series_id": series_id,
            }
        )

    def flush(self) -> None:
        """Insert the queued instance rows, in SOP Instance UID order.

        The order is the same for every batch, so two that share instances wait
        for each other on PostgreSQL's unique index rather than deadlock.

        :raise IntegrityError: another ingest committed one of their SOP Instance UIDs first.
        """
        if self._pending:
            rows = sorted(self._pending, key=lambda row: row["sop_instance_uid"])
            db.session.execute(Instance.__table__.insert(), rows)
            self._pending = []

    def _study_of(self, header: InstanceHeader, owner_id: int) -> Study:
        study = self.studies.get(header.study_instance_uid)
        if study is None:
            study = _create_study(header, owner_id)
            self.studies[header.study_instance_uid] = study
        if study.owner_id != owner_id:
            raise IngestRejected(FOREIGN_STUDY)
        return study

    def _series_of(self, header: InstanceHeader, study: Study) -> int:
        """Return the id of the instance's series, made if need be."""
        key = (study.id, header.series_instance_uid)
        if key not in self._series:
            self._series[key] = _series_id(header, study.id)
        _add_modality(study, header.modality)
        return self._series[key]


def _series_id(header: InstanceHeader, study_id: int) -> int:
    """Return the id of the series of ``header`` in the study, inserting the series if need be."""
    key = {"study_id": study_id, "series_instance_uid": header.series_instance_uid}
    found = db.session.scalar(_SERIES_ID, key)  # one column: cheaper than loading a Series
    if found is not None:
        return found
    return _get_or_create(
        Series,
        key,
        modality=header.modality,
        body_part=header.body_part,
        description=header.series_description,
        series_number=header.series_number,
    ).id


def _create_study(header: InstanceHeader, owner_id: int) -> Study:
    """Insert a study and its patient (or meet the row another ingest inserted meanwhile)."""
    patient = _get_or_create(
        Patient,
        {"owner_id": owner_id, "patient_id": header.patient_id, "name": header.patient_name},
        birth_date=header.patient_birth_date,
        sex=header.patient_sex,
    )
    return _get_or_create(
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
