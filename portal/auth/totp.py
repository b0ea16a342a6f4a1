"""Time-based one-time passwords (RFC 6238) for radiologists and admins."""

from __future__ import annotations

import pyotp
import segno

from portal import clock

ISSUER = "Overread"


def new_secret() -> str:
    """Return a fresh base32 secret (160 bits)."""
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, email: str) -> str:
    """Return the ``otpauth://`` URI an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=ISSUER)


def qr_data_uri(uri: str) -> str:
    """Return the QR code of ``uri`` as an SVG ``data:`` URI for an ``<img>``."""
    return segno.make(uri, error="m").svg_data_uri(scale=5, border=2)


def matching_step(secret: str, code: str, last_step: int | None) -> int | None:
    """Return the time step ``code`` is valid for, or ``None``.

    One step of drift either side is allowed; a step at or before
    ``last_step`` is refused so a code cannot be replayed.
    """
    code = "".join(ch for ch in code if ch.isdigit())
    if len(code) != 6:
        return None
    totp = pyotp.TOTP(secret)
    now = clock.now()
    current = totp.timecode(now)
    for step in (current - 1, current, current + 1):
        if last_step is not None and step <= last_step:
            continue
        if pyotp.utils.strings_equal(totp.generate_otp(step), code):
            return step
    return None
