"""The viewer PIN a radiologist types to redeem a viewing link (hashed like a password)."""

from __future__ import annotations

import re

from portal.auth import passwords
from portal.errors import InvalidInput
from portal.oncall.models import PagingProfile

PIN_PATTERN = re.compile(r"\d{6,12}")


def set_pin(profile: PagingProfile, pin: str) -> None:
    """Store a new PIN (6 to 12 digits); the caller commits.

    :raise InvalidInput: not 6 to 12 digits, or one digit repeated, or a plain run.
    """
    if not PIN_PATTERN.fullmatch(pin):
        raise InvalidInput("A PIN is 6 to 12 digits.")
    if len(set(pin)) == 1 or pin in "01234567890123456789" or pin in "98765432109876543210":
        raise InvalidInput("Choose a PIN that is not one digit repeated or a plain run.")
    profile.pin_hash = passwords.hash_password(pin)


def pin_matches(profile: PagingProfile | None, pin: str) -> bool:
    """Whether ``pin`` is the profile's PIN (``False`` when none is set)."""
    if profile is None or not profile.pin_hash or not pin:
        return False
    return passwords.verify_password(profile.pin_hash, pin)
