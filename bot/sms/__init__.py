"""The SMS bot: pages by Twilio, replies at ``/sms/inbound``, delivery status at ``/sms/status``."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the Twilio webhooks and, when Twilio is configured, the ``sms`` delivery channel.

    Without ``TWILIO_ACCOUNT_SID``, ``TWILIO_AUTH_TOKEN`` and ``TWILIO_FROM``
    SMS stay on the log channel, and the webhooks refuse every request (there
    is no token to check signatures with).
    """
    from bot.sms import channel, views
    from portal.notifications.channels import register_channel

    app.register_blueprint(views.bp)
    if channel.is_configured(app.config):
        register_channel(app, "sms", channel.TwilioChannel)
