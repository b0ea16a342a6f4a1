"""A radiologist's paging profile: preferences, the verified mobile number, the viewer PIN.

A mobile number counts only once its owner typed back the code sent to it.
The code is made as the SMS is sent (:func:`code_for_notification`, called
by the dispatcher), so the outbox holds only the ``{secret}`` placeholder and
the database only the code's SHA-256. Every change is audited, with at most
the last two digits of a phone number; the caller commits.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import time, timedelta
from functools import cache
from zoneinfo import available_timezones

from flask import current_app
from sqlalchemy import select

from portal import clock
from portal.audit.operations import record
from portal.auth import operations as auth_operations
from portal.auth.models import User
from portal.cases.states import Subspecialty
from portal.errors import Conflict, InvalidInput
from portal.extensions import db
from portal.links.pin import set_pin
from portal.notifications.models import Notification
from portal.notifications.operations import enqueue
from portal.notifications.secrets import FILL_IN
from portal.oncall.models import PageVia, PagingProfile

VERIFY_KIND = "mobile.verify"
MAX_CODE_ATTEMPTS = 5
CODE_INTERVAL = timedelta(minutes=1)  # at most one code a minute per profile
SLACK_USER_ID = re.compile(r"[UW][A-Z0-9]{2,20}")
_PHONE_PUNCTUATION = re.compile(r"[\s().-]")
_E164 = re.compile(r"\+[1-9][0-9]{7,14}")


@cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def known_timezone(name: str) -> bool:
    """Whether ``name`` is an IANA time zone name, such as ``Europe/London``."""
    return name in _zone_names()


def timezone_names() -> list[str]:
    return sorted(_zone_names())


def normalise_mobile(number: str) -> str:
    """Return ``number`` in E.164 (``+`` and 8 to 15 digits), without spaces or punctuation.

    :raise InvalidInput: not an international number.
    """
    cleaned = _PHONE_PUNCTUATION.sub("", number or "")
    if not _E164.fullmatch(cleaned):
        raise InvalidInput(
            "Give the number in international format: + and the country code, "
            "such as +44 7700 900123."
        )
    return cleaned


def number_ending(number: str | None) -> str:
    """The last two digits of a number, the most an audit row or a page may show."""
    return f"…{number[-2:]}" if number else ""


def profile_for(user: User) -> PagingProfile:
    """Return ``user``'s profile, or an unsaved one with the defaults."""
    profile = db.session.get(PagingProfile, user.id)
    if profile is None:
        profile = PagingProfile(
            user_id=user.id,
            subspecialties=Subspecialty.GENERAL.value,
            timezone="UTC",
            page_via=PageVia.BOTH.value,
            mobile_code_attempts=0,
        )
    return profile


# --- preferences ------------------------------------------------------------------------
def save_preferences(
    user: User,
    subspecialties: list[str],
    timezone: str,
    slack_user_id: str | None,
    page_via: str,
    quiet_start: time | None,
    quiet_end: time | None,
) -> PagingProfile:
    """Store how and when ``user`` wants to be paged; the caller commits.

    :raise InvalidInput: an unknown subspecialty, time zone or channel, a malformed
        Slack id or one held by another account, or half-given quiet hours.
    """
    chosen = _check_subspecialties(subspecialties)
    _check_quiet_hours(quiet_start, quiet_end)
    if not known_timezone(timezone):
        raise InvalidInput(f"{timezone!r} is not a time zone; use a name such as Europe/London.")
    if page_via not in {via.value for via in PageVia}:
        raise InvalidInput("Choose Slack, SMS or both.")
    profile = profile_for(user)
    profile.slack_user_id = _check_slack_id(user, slack_user_id)
    profile.subspecialties = ",".join(chosen)
    profile.timezone, profile.page_via = timezone, page_via
    profile.quiet_start, profile.quiet_end = quiet_start, quiet_end
    profile.updated_at = clock.now()
    db.session.add(profile)
    record(
        "paging.preferences_saved",
        user,
        target=f"user:{user.id}",
        subspecialties=profile.subspecialties,
        timezone=timezone,
        slack_user_id=profile.slack_user_id,
        page_via=page_via,
        quiet_hours=f"{quiet_start:%H:%M}-{quiet_end:%H:%M}" if quiet_start else None,
    )
    return profile


def _check_subspecialties(values: list[str]) -> list[str]:
    known = [s.value for s in Subspecialty]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise InvalidInput(f"Unknown subspecialty: {', '.join(unknown)}.")
    if not values:
        raise InvalidInput("Choose at least one subspecialty (General if no other).")
    return [value for value in known if value in values]


def _check_quiet_hours(start: time | None, end: time | None) -> None:
    if (start is None) != (end is None):
        raise InvalidInput("Give both ends of the quiet hours, or neither.")
    if start is not None and start == end:
        raise InvalidInput("Quiet hours must start and end at different times.")


def _check_slack_id(user: User, slack_user_id: str | None) -> str | None:
    value = (slack_user_id or "").strip()
    if not value:
        return None
    if not SLACK_USER_ID.fullmatch(value):
        raise InvalidInput(
            "A Slack member ID looks like U012AB3CD: U or W, then capitals and digits."
        )
    holder = db.session.scalars(
        select(PagingProfile).where(
            PagingProfile.slack_user_id == value, PagingProfile.user_id != user.id
        )
    ).first()
    if holder is not None:
        raise InvalidInput("That Slack member ID belongs to another Overread account.")
    return value


# --- the mobile number ------------------------------------------------------------------
def start_mobile_verification(user: User, number: str) -> Notification:
    """Store ``number`` unverified and queue an SMS that will carry a fresh code.

    :raise InvalidInput: not an international number, verified already (here or on
        another account), or a code was asked for less than a minute ago.
    """
    mobile = normalise_mobile(number)
    profile = profile_for(user)
    if profile.mobile == mobile and profile.mobile_verified_at is not None:
        raise InvalidInput("That number is verified already.")
    if _asked_recently(user):
        raise InvalidInput("A code was sent less than a minute ago. Wait a minute, then ask again.")
    _release_from_others(user, mobile)
    profile.mobile, profile.mobile_verified_at = mobile, None
    _void_code(profile)
    profile.updated_at = clock.now()
    db.session.add(profile)
    row = enqueue(
        channel="sms",
        recipient=mobile,
        kind=VERIFY_KIND,
        body=verification_text(),
        user_id=user.id,
        idempotency_key=f"{VERIFY_KIND}:{user.id}:{secrets.token_hex(16)}",
    )
    record(
        "paging.mobile_code_requested", user, target=f"user:{user.id}", mobile=number_ending(mobile)
    )
    return row


def verification_text() -> str:
    minutes = int(current_app.config["MOBILE_CODE_LIFETIME"].total_seconds() // 60)
    return (
        f"Overread verification code: {FILL_IN}. It expires in {minutes} minutes. "
        "If you did not ask for it, ignore this message."
    )


def _asked_recently(user: User) -> bool:
    latest = db.session.scalars(
        select(Notification.created_at)
        .where(Notification.kind == VERIFY_KIND, Notification.user_id == user.id)
        .order_by(Notification.created_at.desc())
        .limit(1)
    ).first()
    return latest is not None and clock.now() - latest < CODE_INTERVAL


def _release_from_others(user: User, mobile: str) -> None:
    """Refuse a number verified by someone else; take it from an unverified claim."""
    holder = db.session.scalars(
        select(PagingProfile).where(
            PagingProfile.mobile == mobile, PagingProfile.user_id != user.id
        )
    ).first()
    if holder is None:
        return
    if holder.mobile_verified_at is not None:
        raise InvalidInput("That number is verified on another Overread account.")
    holder.mobile = None  # an unproven claim: whoever holds the phone confirms it
    _void_code(holder)
    db.session.flush()


def _void_code(profile: PagingProfile) -> None:
    profile.mobile_code_hash = None
    profile.mobile_code_expires_at = None
    profile.mobile_code_attempts = 0


def _digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def code_for_notification(row: Notification) -> str:
    """Make the code for the verification SMS ``row`` as it is sent; store its hash; commit.

    :raise Conflict: the profile no longer waits for a code to that number.
    """
    profile = db.session.get(PagingProfile, row.user_id) if row.user_id else None
    if profile is None or profile.mobile != row.recipient or profile.mobile_verified_at:
        raise Conflict("That number is no longer waiting for a verification code.")
    code = f"{secrets.randbelow(10**6):06d}"
    profile.mobile_code_hash = _digest(code)
    profile.mobile_code_expires_at = clock.now() + current_app.config["MOBILE_CODE_LIFETIME"]
    profile.mobile_code_attempts = 0
    record(
        "paging.mobile_code_sent",
        target=f"user:{profile.user_id}",
        mobile=number_ending(profile.mobile),
    )
    db.session.commit()
    return code


def confirm_mobile(user: User, code: str) -> PagingProfile:
    """Mark the mobile number verified when ``code`` is the one sent to it.

    Wrong codes count; after :data:`MAX_CODE_ATTEMPTS` the code is void. The
    caller commits on failure too, to keep the count.

    :raise InvalidInput: no code waiting, expired, wrong, or too many tries.
    """
    profile = db.session.get(PagingProfile, user.id)
    if profile is None or not profile.mobile or profile.mobile_code_hash is None:
        raise InvalidInput("No code is waiting. Ask for a code first, then type it here.")
    if profile.mobile_code_expires_at is None or clock.now() >= profile.mobile_code_expires_at:
        _void_code(profile)
        _refused(user, profile, "expired")
        raise InvalidInput("That code has expired. Ask for a new one.")
    profile.mobile_code_attempts += 1
    typed = re.sub(r"\s", "", code or "")
    if not hmac.compare_digest(_digest(typed), profile.mobile_code_hash):
        _wrong_code(user, profile)
    profile.mobile_verified_at = clock.now()
    profile.sms_stopped_at = None
    _void_code(profile)
    record(
        "paging.mobile_verified",
        user,
        target=f"user:{user.id}",
        mobile=number_ending(profile.mobile),
    )
    return profile


def _wrong_code(user: User, profile: PagingProfile) -> None:
    left = MAX_CODE_ATTEMPTS - profile.mobile_code_attempts
    if left <= 0:
        _void_code(profile)
        _refused(user, profile, "too many wrong codes")
        raise InvalidInput("Too many wrong codes: that code no longer works. Ask for a new one.")
    _refused(user, profile, "wrong code")
    raise InvalidInput(
        f"That is not the code we sent. {left} {'try' if left == 1 else 'tries'} left."
    )


def _refused(user: User, profile: PagingProfile, reason: str) -> None:
    record(
        "paging.mobile_code_refused",
        user,
        target=f"user:{user.id}",
        reason=reason,
        mobile=number_ending(profile.mobile),
    )


# --- the viewer PIN ---------------------------------------------------------------------
def set_viewer_pin(user: User, pin: str, password: str = "", code: str = "") -> PagingProfile:
    """Set the PIN that opens viewing links, once ``user`` proved it is them again.

    The PIN is checked first, so a weak one does not use up a code from the app.

    :raise InvalidInput: a weak PIN, or neither or both credentials given.
    :raise AuthenticationFailed: wrong password or code (counted toward the lockout).
    """
    checked = PagingProfile()
    set_pin(checked, pin)
    how = auth_operations.reauthenticate(user, password=password, code=code)
    profile = profile_for(user)
    replacing = profile.pin_hash is not None
    profile.pin_hash = checked.pin_hash
    profile.updated_at = clock.now()
    db.session.add(profile)
    record("paging.pin_set", user, target=f"user:{user.id}", replaced=replacing, checked_by=how)
    return profile
