"""Which Overread account a remote DICOM node's pushes belong to."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal import clock
from portal.auth.models import User
from portal.database import UTCDateTime
from portal.extensions import db


class RemoteNode(db.Model):
    """A calling AE title allowed to C-STORE; what it sends is ingested for ``owner``.

    With ``case_id`` set, the studies it sends are attached to that case too.
    """

    __tablename__ = "remote_nodes"

    id: Mapped[int] = mapped_column(primary_key=True)
    ae_title: Mapped[str] = mapped_column(String(16), unique=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    description: Mapped[str] = mapped_column(String(200), default="")
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)

    owner: Mapped[User] = relationship()
    case = relationship("Case")
