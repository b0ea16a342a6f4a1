"""Test helpers for paging: radiologists with paging profiles, and the outbox drained."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time

from sqlalchemy import select

from portal import clock
from portal.auth.models import User
from portal.extensions import db
from portal.links.pin import set_pin
from portal.notifications.dispatcher import dispatch_once
from portal.notifications.models import Notification
from portal.oncall.models import PagingProfile

PIN = "482915"
OTHER_PIN = "739164"


def make_profile(
    app,
    user: User,
    *,
    slack: str | None = None,
    mobile: str | None = None,
    page_via: str = "both",
    subspecialties: str = "general",
    timezone: str = "UTC",
    pin: str | None = PIN,
    quiet: tuple[time, time] | None = None,
) -> None:
    """Give ``user`` a paging profile: a Slack id and/or a verified mobile, and a viewer PIN."""
    with app.app_context():
        profile = db.session.get(PagingProfile, user.id) or PagingProfile(user_id=user.id)
        profile.slack_user_id = slack
        profile.mobile = mobile
        profile.mobile_verified_at = clock.now() if mobile else None
        profile.page_via = page_via
        profile.subspecialties = subspecialties
        profile.timezone = timezone
        profile.quiet_start, profile.quiet_end = quiet or (None, None)
        if pin:
            set_pin(profile, pin)
        db.session.add(profile)
        db.session.commit()


@dataclass
class People:
    physician: User
    radiologist: User
    other: User
    admin: User


def make_people(app, create_user) -> People:
    """A physician, two radiologists with paging profiles (PIN and OTHER_PIN), and an admin."""
    people = People(
        physician=create_user("physician"),
        radiologist=create_user("radiologist", name="Dr Reader"),
        other=create_user("radiologist", name="Dr Other"),
        admin=create_user("admin"),
    )
    make_profile(app, people.radiologist)
    make_profile(app, people.other, pin=OTHER_PIN)
    return people


def drain(app) -> int:
    """Send everything due now through the app's channels; return how many rows."""
    with app.app_context():
        return dispatch_once()


def outbox(app, **where) -> list[Notification]:
    """The outbox rows matching ``where`` (column=value), oldest first, detached."""
    with app.app_context():
        query = select(Notification).order_by(Notification.id)
        for column, value in where.items():
            query = query.where(getattr(Notification, column) == value)
        rows = db.session.scalars(query).all()
        db.session.expunge_all()
        return rows
