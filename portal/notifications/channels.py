"""Delivery channels: each turns an outbox row into a message somewhere.

Channels are looked up by the row's ``channel`` name. The bots add ``slack``
and ``sms`` to an app with :func:`register_channel`; without them both stay
on the log channel, which the admin outbox page shows.
"""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Protocol

from flask import Flask, current_app

from portal.notifications.models import Notification

logger = logging.getLogger(__name__)


class DeliveryError(Exception):
    """Sending failed; worth retrying unless ``permanent`` (the provider will never accept it)."""

    permanent = False


@dataclass
class Delivery:
    via: str
    provider_message_id: str | None = None
    provider_status: str | None = None


class Channel(Protocol):
    """Sends rows. A channel may also have ``settle()``, which the dispatcher calls on every
    pass: catching up on what its provider reported out of turn (see ``TwilioChannel``).
    """

    name: str

    def send(self, notification: Notification) -> Delivery: ...


class LogChannel:
    """Keep the message in the outbox only; the admin outbox page shows it."""

    name = "log"

    def send(self, notification: Notification) -> Delivery:
        logger.info(
            "notification %s (%s) kept on the log channel", notification.id, notification.kind
        )
        return Delivery(via=self.name, provider_status="logged")


class SmtpChannel:
    """Send email through an SMTP server."""

    name = "email"

    def __init__(self, config: dict) -> None:
        self.host = config["SMTP_HOST"]
        self.port = config["SMTP_PORT"]
        self.username = config.get("SMTP_USERNAME")
        self.password = config.get("SMTP_PASSWORD")
        self.starttls = config.get("SMTP_STARTTLS", False)
        self.sender = config["MAIL_FROM"]

    def send(self, notification: Notification) -> Delivery:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = notification.recipient
        message["Subject"] = notification.subject or "Overread"
        message["Message-ID"] = make_msgid(domain="overread")
        message.set_content(notification.body)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=15) as smtp:
                if self.starttls:
                    smtp.starttls()
                if self.username:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"SMTP: {exc.__class__.__name__}: {exc}") from exc
        return Delivery(
            via=self.name, provider_message_id=message["Message-ID"], provider_status="accepted"
        )


def _email_channel(config: dict) -> Channel:
    return SmtpChannel(config) if config.get("SMTP_HOST") else LogChannel()


def _case_timer(config: dict) -> Channel:
    # Imported here: the cases package writes to the outbox, so it imports this module.
    from portal.cases.timers import CaseTimerChannel

    return CaseTimerChannel()


def _escalation(config: dict) -> Channel:
    from portal.oncall.escalator import EscalationChannel

    return EscalationChannel()


CHANNEL_FACTORIES: dict[str, Callable[[dict], Channel]] = {
    "email": _email_channel,
    "log": lambda config: LogChannel(),
    "slack": lambda config: LogChannel(),
    "sms": lambda config: LogChannel(),
    "timer": _case_timer,
    "escalation": _escalation,
}
_APP_KEY = "overread.channels"


def register_channel(app: Flask, name: str, factory: Callable[[dict], Channel]) -> None:
    """Make ``app`` deliver rows of channel ``name`` with what ``factory(config)`` builds."""
    app.extensions.setdefault(_APP_KEY, {})[name] = factory


def build_channels(config: dict) -> dict[str, Channel]:
    """Return one channel per name, built from the current app's configuration."""
    factories = {**CHANNEL_FACTORIES, **current_app.extensions.get(_APP_KEY, {})}
    return {name: factory(config) for name, factory in factories.items()}
