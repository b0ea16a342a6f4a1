"""The Slack bot: pages with Accept/Decline buttons, the /overread command, link messages."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register ``POST /slack/events`` and the ``slack`` delivery channel."""
