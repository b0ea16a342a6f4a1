"""Logging set-up: one format, and no secret path segment in request logs.

Viewing links, invites, password resets, shares and calendar feeds carry their
secret in the URL path; the request log of the development server (werkzeug)
and of gunicorn would otherwise keep it. :class:`RedactSecretPaths` replaces
those segments with ``<redacted>`` in every record of the loggers it guards.
"""

from __future__ import annotations

import logging
import re

SECRET_PATH = re.compile(r"(/(?:l|invite|reset|shared|oncall/feed)/)[^/\s?\"]+")
GUARDED_LOGGERS = ("werkzeug", "gunicorn.access", "gunicorn.error")


def redact(text: str) -> str:
    return SECRET_PATH.sub(r"\1<redacted>", text)


class RedactSecretPaths(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = redact(record.getMessage())
            record.args = None
        else:
            record.msg = redact(str(record.msg))
        return True


def init_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    for name in GUARDED_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecretPaths) for f in logger.filters):
            logger.addFilter(RedactSecretPaths())
