"""Opaque random tokens that are stored only as their SHA-256."""

from __future__ import annotations

import hashlib
import secrets


def hash_token(raw: str) -> str:
    """Return the hex SHA-256 under which ``raw`` is stored."""
    return hashlib.sha256(raw.encode()).hexdigest()


def new_token(prefix: str = "") -> tuple[str, str]:
    """Return a fresh token of 256 random bits and its stored hash."""
    raw = prefix + secrets.token_urlsafe(32)
    return raw, hash_token(raw)
