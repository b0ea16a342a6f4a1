"""What admins change on on-call schedules: the schedule, its layers, members and overrides.

Each function checks its input, changes the rows, writes an audit row and
leaves the commit to the caller. Who is on call at a given time is worked
out by :mod:`portal.oncall.schedules`; the iCalendar feed by :mod:`portal.oncall.ical`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import select

from portal.audit.operations import record
from portal.auth.models import Role, User
from portal.cases.states import Subspecialty
from portal.errors import InvalidInput
from portal.extensions import db
from portal.oncall import ical
from portal.oncall.models import Layer, LayerMember, Override, Schedule
from portal.oncall.profiles import known_timezone

MAX_POSITION = 20
MAX_ROTATION_DAYS = 366


@dataclass(frozen=True)
class LayerSpec:
    name: str
    position: int
    rotation_days: int
    starts_on: date
    handoff_time: time
    window_start: time | None = None
    window_end: time | None = None


@dataclass(frozen=True)
class OverrideSpec:
    """An override as typed: ``starts_at``/``ends_at`` are naive, in the schedule's zone."""

    user_id: int
    replaces_user_id: int | None
    starts_at: datetime
    ends_at: datetime
    note: str = ""


def on_call_candidates() -> list[User]:
    """The people who may be put on call: active radiologists, by name."""
    return db.session.scalars(
        select(User)
        .where(User.role == Role.RADIOLOGIST, User.active.is_(True))
        .order_by(User.name, User.email)
    ).all()


def _target(schedule: Schedule) -> str:
    return f"schedule:{schedule.id}"


# --- the schedule ---------------------------------------------------------------------------
def create_schedule(actor: User, name: str, subspecialty: str, timezone: str) -> Schedule:
    """Add a schedule for ``subspecialty``; the caller commits.

    :raise InvalidInput: no name, an unknown subspecialty or time zone, or the
        subspecialty has a schedule already.
    """
    schedule = Schedule()
    _describe(schedule, name, subspecialty, timezone)
    db.session.add(schedule)
    db.session.flush()
    record(
        "oncall.schedule_created",
        actor,
        target=_target(schedule),
        name=schedule.name,
        subspecialty=subspecialty,
        timezone=timezone,
    )
    return schedule


def update_schedule(
    actor: User, schedule: Schedule, name: str, subspecialty: str, timezone: str
) -> None:
    """Rename a schedule, or move it to another subspecialty or time zone; the caller commits."""
    _describe(schedule, name, subspecialty, timezone)
    record(
        "oncall.schedule_changed",
        actor,
        target=_target(schedule),
        name=schedule.name,
        subspecialty=subspecialty,
        timezone=timezone,
    )


def _describe(schedule: Schedule, name: str, subspecialty: str, timezone: str) -> None:
    name = (name or "").strip()
    if not name:
        raise InvalidInput("Give the schedule a name.")
    if subspecialty not in {s.value for s in Subspecialty}:
        raise InvalidInput(f"Unknown subspecialty {subspecialty!r}.")
    if not known_timezone(timezone):
        raise InvalidInput(f"{timezone!r} is not a time zone; use a name such as Europe/London.")
    other = db.session.scalars(
        select(Schedule).where(Schedule.subspecialty == subspecialty, Schedule.id != schedule.id)
    ).first()
    if other is not None:
        label = Subspecialty(subspecialty).label
        raise InvalidInput(f"{label} already has a schedule: {other.name}. Add layers to it.")
    schedule.name, schedule.subspecialty, schedule.timezone = name, subspecialty, timezone


def issue_feed(actor: User, schedule: Schedule) -> str:
    """Make a new iCalendar feed token (the old URL stops working); return it raw."""
    replaced = schedule.feed_token_hash is not None
    raw = ical.new_feed_token(schedule)
    record("oncall.feed_issued", actor, target=_target(schedule), replaced=replaced)
    return raw


# --- layers and their members ---------------------------------------------------------------
def add_layer(actor: User, schedule: Schedule, spec: LayerSpec) -> Layer:
    """Add a rotation to ``schedule``; the caller commits.

    :raise InvalidInput: a position taken or out of range, a rotation length out of
        range, or a half-given or empty daily window.
    """
    _check_layer(schedule, spec)
    layer = Layer(
        schedule=schedule,
        name=spec.name.strip(),
        position=spec.position,
        rotation_days=spec.rotation_days,
        starts_on=spec.starts_on,
        handoff_time=spec.handoff_time,
        window_start=spec.window_start,
        window_end=spec.window_end,
    )
    db.session.add(layer)
    db.session.flush()
    record(
        "oncall.layer_added",
        actor,
        target=_target(schedule),
        layer=layer.id,
        position=layer.position,
        rotation_days=layer.rotation_days,
        window=_window_text(layer.window_start, layer.window_end),
    )
    return layer


def _check_layer(schedule: Schedule, spec: LayerSpec) -> None:
    if not 1 <= spec.position <= MAX_POSITION:
        raise InvalidInput(f"A layer's position is between 1 and {MAX_POSITION}.")
    if any(layer.position == spec.position for layer in schedule.layers):
        raise InvalidInput(f"This schedule has a layer at position {spec.position} already.")
    if not 1 <= spec.rotation_days <= MAX_ROTATION_DAYS:
        raise InvalidInput(f"A turn lasts between 1 and {MAX_ROTATION_DAYS} days.")
    if (spec.window_start is None) != (spec.window_end is None):
        raise InvalidInput("Give both ends of the daily window, or neither for the whole day.")
    if spec.window_start is not None and spec.window_start == spec.window_end:
        raise InvalidInput("The daily window must start and end at different times.")


def _window_text(start: time | None, end: time | None) -> str | None:
    return f"{start:%H:%M}-{end:%H:%M}" if start and end else None


def remove_layer(actor: User, layer: Layer) -> None:
    """Delete a layer with its members; the caller commits."""
    schedule = layer.schedule
    record(
        "oncall.layer_removed",
        actor,
        target=_target(schedule),
        layer=layer.id,
        position=layer.position,
    )
    schedule.layers.remove(layer)


def set_layer_members(actor: User, layer: Layer, user_ids: list[int]) -> None:
    """Make ``user_ids``, in this order, the rotation of ``layer``; the caller commits.

    :raise InvalidInput: someone listed twice, or not an active radiologist.
    """
    if len(set(user_ids)) != len(user_ids):
        raise InvalidInput("Each person can appear only once in a layer.")
    eligible = {user.id: user for user in on_call_candidates()}
    unknown = [user_id for user_id in user_ids if user_id not in eligible]
    if unknown:
        raise InvalidInput("Only active radiologists can be on call.")
    layer.members.clear()
    db.session.flush()  # the old positions go before the new ones take them
    for position, user_id in enumerate(user_ids, start=1):
        layer.members.append(LayerMember(position=position, user_id=user_id))
    record(
        "oncall.layer_members_set",
        actor,
        target=_target(layer.schedule),
        layer=layer.id,
        members=user_ids,
    )


# --- overrides ------------------------------------------------------------------------------
def add_override(actor: User, schedule: Schedule, spec: OverrideSpec) -> Override:
    """Add a one-off change to ``schedule``; the caller commits.

    :raise InvalidInput: not an active radiologist, replacing oneself, an end not
        after the start, or a local time the clocks skip.
    """
    eligible = {user.id for user in on_call_candidates()}
    if spec.user_id not in eligible:
        raise InvalidInput("Only an active radiologist can cover a shift.")
    if spec.replaces_user_id == spec.user_id:
        raise InvalidInput("Someone cannot replace themselves; choose another person.")
    starts_at = local_to_utc(spec.starts_at, schedule.timezone)
    ends_at = local_to_utc(spec.ends_at, schedule.timezone)
    if ends_at <= starts_at:
        raise InvalidInput("The override must end after it starts.")
    override = Override(
        schedule=schedule,
        user_id=spec.user_id,
        replaces_user_id=spec.replaces_user_id,
        starts_at=starts_at,
        ends_at=ends_at,
        note=spec.note.strip(),
        created_by_id=actor.id,
    )
    db.session.add(override)
    db.session.flush()
    record(
        "oncall.override_added",
        actor,
        target=_target(schedule),
        override=override.id,
        user=spec.user_id,
        replaces=spec.replaces_user_id,
        starts_at=starts_at.isoformat(),
        ends_at=ends_at.isoformat(),
    )
    return override


def remove_override(actor: User, override: Override) -> None:
    """Delete an override; the caller commits."""
    schedule = override.schedule
    record("oncall.override_removed", actor, target=_target(schedule), override=override.id)
    schedule.overrides.remove(override)


def local_to_utc(moment: datetime, zone_name: str) -> datetime:
    """Read the naive ``moment`` as wall-clock time in ``zone_name``; return it in UTC.

    An ambiguous time (the clocks go back) is read as the first of the two.

    :raise InvalidInput: the time does not exist there (the clocks go forward over it).
    """
    zone = ZoneInfo(zone_name)
    utc = moment.replace(tzinfo=zone).astimezone(UTC)
    if utc.astimezone(zone).replace(tzinfo=None) != moment:
        raise InvalidInput(
            f"{moment:%Y-%m-%d %H:%M} does not exist in {zone_name}: the clocks go forward then."
        )
    return utc
