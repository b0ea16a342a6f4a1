"""Overread's error hierarchy; each error carries the HTTP status it maps to."""

from __future__ import annotations


class OverreadError(Exception):
    """Base of every error a user may be shown."""

    status_code = 400
    title = "Request refused"


class ConfigError(OverreadError):
    """A setting is missing or malformed; raised at start-up."""

    status_code = 500
    title = "Configuration error"


class InvalidInput(OverreadError):
    """The request carries data that cannot be accepted."""

    status_code = 400
    title = "Invalid input"


class AuthenticationFailed(OverreadError):
    """Credentials were wrong, expired or locked."""

    status_code = 401
    title = "Sign-in failed"


class PermissionDenied(OverreadError):
    """The signed-in user may not do this."""

    status_code = 403
    title = "Not allowed"


class NotFound(OverreadError):
    """The thing asked for does not exist, or is not visible to this user."""

    status_code = 404
    title = "Not found"


class Conflict(OverreadError):
    """The request clashes with the current state."""

    status_code = 409
    title = "Conflict"


class TokenInvalid(OverreadError):
    """A one-time link is unknown, expired, used or revoked."""

    status_code = 410
    title = "Link no longer valid"


class StorageError(OverreadError):
    """The blob store failed or holds something unexpected."""

    status_code = 503
    title = "Storage unavailable"
