"""The one clock Overread reads, so tests can move time."""

from __future__ import annotations

from datetime import UTC, datetime

_frozen: datetime | None = None


def now() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return _frozen if _frozen is not None else datetime.now(UTC)


def freeze(moment: datetime | None) -> None:
    """Pin :func:`now` to ``moment`` (``None`` lets time run again); for tests."""
    global _frozen
    _frozen = moment
