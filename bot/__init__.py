"""The on-call bots: Slack (slack-bolt over HTTP) and SMS (Twilio).

``bot`` calls ``portal`` operations; ``portal`` never imports ``bot``. The
app built by :func:`portal.create_app` gets the bots' webhooks and delivery
channels from :func:`init_app`, which ``app.py`` calls.
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> Flask:
    """Add the Slack and SMS webhooks and delivery channels to ``app``."""
    from bot import slack, sms

    slack.init_app(app)
    sms.init_app(app)
    return app
