"""Who is on call: a schedule's layers rotated, windowed and overridden into shifts.

A layer hands off at ``handoff_time`` on the schedule's local wall clock every
``rotation_days`` days from ``starts_on``, so a shift that spans a change of
daylight saving time is an hour shorter or longer. A window keeps the layer to
part of each local day (follow-the-sun). Overrides then swap one person's
shifts to another, or add someone for a span. Shifts of inactive accounts are
left out: nobody is on call rather than a disabled account.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select

from portal.auth.models import User
from portal.cases.states import Subspecialty
from portal.extensions import db
from portal.oncall.models import Layer, Override, Schedule

logger = logging.getLogger(__name__)
OVERRIDE_LAYER = "Override"
NEXT_HORIZON = timedelta(days=30)  # how far ahead the board looks for the next shift


@dataclass(frozen=True)
class Shift:
    """``user`` is on call from ``starts_at`` to ``ends_at`` (aware UTC)."""

    user: User
    starts_at: datetime
    ends_at: datetime
    layer: str  # the layer's name (or "Layer N"), or "Override"
    position: int  # the layer's position; 0 for an added (ad hoc) override


@dataclass(frozen=True)
class BoardRow:
    schedule: Schedule
    now: list[Shift]
    next: list[Shift]  # per layer, the first shift starting after the board's moment


def shifts(schedule: Schedule, start: datetime, end: datetime) -> list[Shift]:
    """Return every shift of ``schedule`` overlapping ``[start, end)``, overrides applied.

    Shifts are whole (not cut at ``start`` or ``end``), sorted by start, then position.
    """
    zone = _zone(schedule)
    found = [shift for layer in schedule.layers for shift in _layer_shifts(layer, zone, start, end)]
    for override in schedule.overrides:
        found = _apply_override(found, override)
    found = [s for s in found if s.user.active and s.starts_at < end and s.ends_at > start]
    return sorted(found, key=lambda s: (s.starts_at, s.position, s.user.id))


def on_call(schedule: Schedule, at: datetime) -> list[Shift]:
    """Return the shifts covering ``at``, by position (ad hoc overrides first)."""
    covering = shifts(schedule, at, at + timedelta(microseconds=1))
    return sorted(covering, key=lambda s: (s.position, s.starts_at, s.user.id))


def schedule_for(subspecialty: str) -> Schedule | None:
    """Return the schedule of ``subspecialty``, else the general one, else ``None``."""
    for wanted in (subspecialty, Subspecialty.GENERAL):
        schedule = db.session.scalars(
            select(Schedule).where(Schedule.subspecialty == wanted).order_by(Schedule.id)
        ).first()
        if schedule is not None:
            return schedule
    return None


def board(at: datetime) -> list[BoardRow]:
    """Return who is on call at ``at`` and next, for every schedule (by subspecialty, name)."""
    schedules = db.session.scalars(
        select(Schedule).order_by(Schedule.subspecialty, Schedule.name, Schedule.id)
    ).all()
    return [BoardRow(s, on_call(s, at), _next_shifts(s, at)) for s in schedules]


def _next_shifts(schedule: Schedule, at: datetime) -> list[Shift]:
    """The first shift of each layer starting after ``at``, within :data:`NEXT_HORIZON`."""
    first: dict[int, Shift] = {}
    for shift in shifts(schedule, at, at + NEXT_HORIZON):
        if shift.starts_at > at:
            first.setdefault(shift.position, shift)
    return [first[position] for position in sorted(first)]


def _zone(schedule: Schedule) -> ZoneInfo:
    try:
        return ZoneInfo(schedule.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        logger.warning(
            "schedule %s: unknown time zone %r, using UTC", schedule.id, schedule.timezone
        )
        return ZoneInfo("UTC")


def _local(day: date, moment: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of wall-clock ``moment`` on ``day`` in ``zone``."""
    return datetime.combine(day, moment, tzinfo=zone).astimezone(UTC)


# --- one layer ----------------------------------------------------------------------
def _layer_shifts(layer: Layer, zone: ZoneInfo, start: datetime, end: datetime) -> list[Shift]:
    members = layer.members
    if not members:
        return []
    name = layer.name or f"Layer {layer.position}"
    found = []
    for turn, begins, ends in _turns(layer, zone, start, end):
        user = members[turn % len(members)].user
        for piece_start, piece_end in _windowed(layer, zone, begins, ends):
            found.append(Shift(user, piece_start, piece_end, name, layer.position))
    return found


def _handoff(layer: Layer, zone: ZoneInfo, turn: int) -> datetime:
    """When turn number ``turn`` (0 from ``starts_on``) begins."""
    day = layer.starts_on + timedelta(days=turn * _rotation_days(layer))
    return _local(day, layer.handoff_time, zone)


def _rotation_days(layer: Layer) -> int:
    return max(1, layer.rotation_days)


def _turns(
    layer: Layer, zone: ZoneInfo, start: datetime, end: datetime
) -> Iterator[tuple[int, datetime, datetime]]:
    """Yield ``(turn, begins, ends)`` for each turn overlapping ``[start, end)``."""
    days_in = (start.astimezone(zone).date() - layer.starts_on).days
    turn = max(0, days_in // _rotation_days(layer) - 1)  # one turn early: hand-off time
    while (begins := _handoff(layer, zone, turn)) < end:
        ends = _handoff(layer, zone, turn + 1)
        if ends > start:
            yield turn, begins, ends
        turn += 1


def _windowed(
    layer: Layer, zone: ZoneInfo, begins: datetime, ends: datetime
) -> Iterator[tuple[datetime, datetime]]:
    """Yield the parts of ``[begins, ends)`` inside the layer's daily window."""
    opens_at, closes_at = layer.window_start, layer.window_end
    if opens_at is None or closes_at is None or opens_at == closes_at:
        yield begins, ends
        return
    overnight = closes_at < opens_at
    day = begins.astimezone(zone).date() - timedelta(days=1)  # a window opened the day before
    while (opens := _local(day, opens_at, zone)) < ends:
        closes = _local(day + timedelta(days=1) if overnight else day, closes_at, zone)
        if max(opens, begins) < min(closes, ends):
            yield max(opens, begins), min(closes, ends)
        day += timedelta(days=1)


# --- overrides ----------------------------------------------------------------------
def _apply_override(found: list[Shift], override: Override) -> list[Shift]:
    """Swap the replaced person's shifts to the override's user, or add the user on top."""
    if override.replaces_user_id is None:
        added = Shift(override.user, override.starts_at, override.ends_at, OVERRIDE_LAYER, 0)
        return [*found, added]
    result = []
    for shift in found:
        swapped = (
            shift.user.id == override.replaces_user_id
            and shift.starts_at < override.ends_at
            and override.starts_at < shift.ends_at
        )
        result.extend(_swap(shift, override) if swapped else [shift])
    return result


def _swap(shift: Shift, override: Override) -> list[Shift]:
    """Split ``shift`` at the override's edges; the part inside goes to the override's user."""
    inside_start = max(shift.starts_at, override.starts_at)
    inside_end = min(shift.ends_at, override.ends_at)
    pieces = []
    if shift.starts_at < inside_start:
        pieces.append(replace(shift, ends_at=inside_start))
    pieces.append(replace(shift, user=override.user, starts_at=inside_start, ends_at=inside_end))
    if inside_end < shift.ends_at:
        pieces.append(replace(shift, starts_at=inside_end))
    return pieces
