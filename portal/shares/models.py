"""A share of one case with one outside email address.

The link's code and the emailed one-time code are stored only as hashes. A
share is usable until ``expires_at`` unless revoked; every view is audited
(``share.*`` actions on the case), and the sharer's case page lists them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal import clock
from portal.database import UTCDateTime
from portal.extensions import db


class Share(db.Model):
    __tablename__ = "case_shares"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    sharer_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    email: Mapped[str] = mapped_column(String(254))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    otp_hash: Mapped[str | None] = mapped_column(String(64))
    otp_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    otp_attempts: Mapped[int] = mapped_column(default=0)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Bumped on revocation so a recipient's open session ends at once.
    session_version: Mapped[int] = mapped_column(default=1)

    case = relationship("Case")
    sharer = relationship("User", foreign_keys=[sharer_id])

    def usable(self, now: datetime | None = None) -> bool:
        return self.revoked_at is None and (now or clock.now()) < self.expires_at

    def status(self, now: datetime | None = None) -> str:
        """Return ``active``, ``expired`` or ``revoked``, for pages and audit rows."""
        if self.revoked_at is not None:
            return "revoked"
        return "active" if self.usable(now) else "expired"

    def code_live(self, now: datetime | None = None) -> bool:
        """Tell whether a one-time code was sent and may still be entered."""
        return (
            self.otp_hash is not None
            and self.otp_expires_at is not None
            and (now or clock.now()) < self.otp_expires_at
        )

    @property
    def target(self) -> str:
        """The audit target naming this share."""
        return f"share:{self.id}"
