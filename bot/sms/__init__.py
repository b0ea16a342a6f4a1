"""The SMS bot: pages by Twilio, replies at ``/sms/inbound``, delivery status at ``/sms/status``."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the Twilio webhooks and the ``sms`` delivery channel."""
