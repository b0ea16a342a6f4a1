"""The stored mapping from original to replacement identifiers, per de-identification scope."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from portal import clock
from portal.database import UTCDateTime
from portal.extensions import db


class DeidMapping(db.Model):
    """One original value and its replacement within a scope (a case, an upload batch).

    ``kind`` says what the value is (``uid``, ``patient_id``, ``accession``...), so
    the requester can relate a de-identified report back to the original study.
    """

    __tablename__ = "deid_mappings"
    __table_args__ = (UniqueConstraint("scope", "kind", "original", name="uq_deid_scope_value"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(100), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    original: Mapped[str] = mapped_column(String(324))
    replacement: Mapped[str] = mapped_column(String(324))
    owner_id: Mapped[int | None] = mapped_column(index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
