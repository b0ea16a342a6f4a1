"""The iCalendar feed of a schedule, reached by a secret token in its URL.

The feed names the radiologists on call and nothing else: no case and no
patient appears in it. Only the token's SHA-256 is stored.
"""

from __future__ import annotations

from datetime import datetime

from icalendar import Calendar, Event
from sqlalchemy import select

from portal import clock
from portal.extensions import db
from portal.oncall.models import Schedule
from portal.oncall.schedules import Shift, shifts
from portal.opaque import hash_token, new_token

PRODID = "-//Overread//On-call schedules//EN"


def feed(schedule: Schedule, start: datetime, end: datetime) -> bytes:
    """Return ``schedule``'s shifts overlapping ``[start, end)`` as an iCalendar file."""
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("x-wr-calname", f"On call: {schedule.name}")
    stamp = clock.now()
    for shift in shifts(schedule, start, end):
        calendar.add_component(_event(schedule, shift, stamp))
    return calendar.to_ical()


def _event(schedule: Schedule, shift: Shift, stamp: datetime) -> Event:
    event = Event()
    starts = shift.starts_at.strftime("%Y%m%dT%H%M%SZ")
    event.add("uid", f"{schedule.id}-{shift.position}-{shift.user.id}-{starts}@overread")
    event.add("dtstamp", stamp)
    event.add("dtstart", shift.starts_at)
    event.add("dtend", shift.ends_at)
    event.add("summary", f"On call: {shift.user.name} ({schedule.name}, {shift.layer})")
    event.add("transp", "TRANSPARENT")
    return event


def new_feed_token(schedule: Schedule) -> str:
    """Give ``schedule`` a new feed token (the old one stops working); the caller commits.

    :return: the token, to show once; only its hash is kept.
    """
    raw, hashed = new_token()
    schedule.feed_token_hash = hashed
    return raw


def schedule_for_feed_token(raw: str) -> Schedule | None:
    """Return the schedule whose feed token is ``raw``, or ``None``."""
    if not raw:
        return None
    return db.session.scalars(
        select(Schedule).where(Schedule.feed_token_hash == hash_token(raw))
    ).first()
