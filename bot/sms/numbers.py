"""Phone numbers in logs and the audit log: never in full."""

from __future__ import annotations


def mask_number(number: str | None) -> str:
    """Return ``number`` reduced to its last two digits: ``"***01"``."""
    digits = "".join(ch for ch in number or "" if ch.isdigit())
    return f"***{digits[-2:]}" if len(digits) >= 2 else "***"
