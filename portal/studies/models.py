"""The study index: patients, studies, series and instances, as found in the files.

Blobs live in the blob store under PHI-free keys; these rows say what each blob is.
Text columns hold ``""`` rather than ``NULL`` when a file leaves an attribute
empty, so unique constraints behave the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal import clock
from portal.database import UTCDateTime
from portal.extensions import db

UID_LENGTH = 64
PERSON_NAME_LENGTH = 324  # PN: three component groups of 64 characters, and separators
TEXT_LENGTH = 200


class Patient(db.Model):
    """The patient a study is about, as one owner's files name them.

    ``patient_id`` is the DICOM Patient ID (0010,0020), not a foreign key.
    """

    __tablename__ = "patients"
    __table_args__ = (
        UniqueConstraint("owner_id", "patient_id", "name", name="uq_patients_owner_identity"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"))  # indexed by the constraint
    patient_id: Mapped[str] = mapped_column(String(TEXT_LENGTH), default="")
    name: Mapped[str] = mapped_column(String(PERSON_NAME_LENGTH), default="")
    birth_date: Mapped[date | None] = mapped_column(Date)
    sex: Mapped[str] = mapped_column(String(16), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

    studies: Mapped[list[Study]] = relationship(back_populates="patient")


class Study(db.Model):
    """One imaging study; ``owner_id`` is the account that uploaded it first."""

    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(String(UID_LENGTH), unique=True)
    study_date: Mapped[date | None] = mapped_column(Date, index=True)
    study_time: Mapped[str] = mapped_column(String(32), default="")
    description: Mapped[str] = mapped_column(String(TEXT_LENGTH), default="")
    accession_number: Mapped[str] = mapped_column(String(64), default="", index=True)
    modalities_in_study: Mapped[str] = mapped_column(String(TEXT_LENGTH), default="")
    referring_physician: Mapped[str] = mapped_column(String(PERSON_NAME_LENGTH), default="")
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

    patient: Mapped[Patient] = relationship(back_populates="studies")
    series: Mapped[list[Series]] = relationship(back_populates="study", order_by="Series.id")

    @property
    def modalities(self) -> list[str]:
        """Return the modalities in the study as a list (stored backslash-separated)."""
        return [m for m in self.modalities_in_study.split("\\") if m]


class Series(db.Model):
    """One series of a study (unique within its study)."""

    __tablename__ = "series"
    __table_args__ = (
        UniqueConstraint("study_id", "series_instance_uid", name="uq_series_study_uid"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    series_instance_uid: Mapped[str] = mapped_column(String(UID_LENGTH), index=True)
    modality: Mapped[str] = mapped_column(String(16), default="")
    body_part: Mapped[str] = mapped_column(String(64), default="")
    description: Mapped[str] = mapped_column(String(TEXT_LENGTH), default="")
    series_number: Mapped[int | None]
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"))  # indexed by the constraint
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

    study: Mapped[Study] = relationship(back_populates="series")
    instances: Mapped[list[Instance]] = relationship(
        back_populates="series", order_by="Instance.id"
    )


class Instance(db.Model):
    """One stored DICOM file; ``sha256`` is the hash of the blob as stored."""

    __tablename__ = "instances"

    id: Mapped[int] = mapped_column(primary_key=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(UID_LENGTH), unique=True)
    sop_class_uid: Mapped[str] = mapped_column(String(UID_LENGTH))
    instance_number: Mapped[int | None]
    transfer_syntax_uid: Mapped[str] = mapped_column(String(UID_LENGTH))
    rows: Mapped[int | None]
    columns: Mapped[int | None]
    number_of_frames: Mapped[int | None]
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(200), unique=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

    series: Mapped[Series] = relationship(back_populates="instances")
