"""The ``sms`` delivery channel: outbox rows sent as SMS through Twilio's REST API.

The real :class:`twilio.rest.Client` is used, pointed at ``TWILIO_API_URL``
(Twilio itself, or the tests' local fake) with a timeout. Every failure is a
:class:`DeliveryError`, so the dispatcher retries and, for a page, falls back
to Slack. Error texts name the Twilio error code, never the number in full nor
the message body (Twilio's own messages quote the number).
"""

from __future__ import annotations

import logging

from requests import RequestException
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from bot.sms.delivery_status import apply_early_reports
from bot.sms.numbers import mask_number
from portal.notifications.channels import Delivery, DeliveryError
from portal.notifications.models import Notification

logger = logging.getLogger(__name__)
DEFAULT_TIMEOUT_SECONDS = 10
STATUS_PATH = "/sms/status"

#: Twilio error codes that retrying cannot fix: the fallback channel has to take over.
#: https://www.twilio.com/docs/api/errors
RECIPIENT_ERRORS = {
    21211: "the number is not a valid phone number",
    21408: "sending to this region is not enabled on the account",
    21610: "the recipient replied STOP and is unsubscribed",
    21612: "Twilio cannot route to this number",
    21614: "the number is not a mobile number",
}


class RecipientRefused(DeliveryError):
    """Twilio will not send to this recipient; retrying the same number will not help."""

    permanent = True


def is_configured(config: dict) -> bool:
    """Whether Twilio credentials and a sending number are set."""
    return all(
        config.get(key) for key in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM")
    )


def twilio_client(config: dict) -> Client:
    """Return the Twilio REST client for ``config``, with its timeout and API base URL."""
    timeout = config.get("TWILIO_TIMEOUT_SECONDS") or DEFAULT_TIMEOUT_SECONDS
    client = Client(
        config["TWILIO_ACCOUNT_SID"],
        config["TWILIO_AUTH_TOKEN"],
        http_client=TwilioHttpClient(timeout=timeout),
    )
    client.api.base_url = config["TWILIO_API_URL"]  # the Domain every Messages call goes through
    return client


class TwilioChannel:
    """Send each row's body to its recipient by SMS; Twilio reports delivery to ``/sms/status``."""

    name = "sms"

    def __init__(self, config: dict) -> None:
        self.client = twilio_client(config)
        self.sender = config["TWILIO_FROM"]
        self.status_callback = config["BASE_URL"] + STATUS_PATH

    def send(self, notification: Notification) -> Delivery:
        try:
            message = self.client.messages.create(
                to=notification.recipient,
                from_=self.sender,
                body=notification.body,
                status_callback=self.status_callback,
            )
        except (TwilioRestException, TwilioServiceException) as exc:
            raise _refusal(exc, notification.recipient) from None  # its text quotes the number
        except RequestException as exc:
            raise DeliveryError(f"Twilio not reached: {exc.__class__.__name__}") from None
        logger.info(
            "notification %s: SMS to %s queued by Twilio as %s (%s)",
            notification.id,
            mask_number(notification.recipient),
            message.sid,
            message.status,
        )
        return Delivery(
            via=self.name, provider_message_id=message.sid, provider_status=message.status
        )

    def settle(self) -> None:
        """Apply the delivery reports Twilio sent before their message ids were saved."""
        apply_early_reports()


def _refusal(exc: TwilioRestException | TwilioServiceException, recipient: str) -> DeliveryError:
    """Describe a Twilio error response by its HTTP status and error code alone."""
    status, code = exc.status, exc.code
    if status >= 500 or status == 429:
        return DeliveryError(f"Twilio answered HTTP {status} (error {code}); will retry")
    if code in RECIPIENT_ERRORS:
        return RecipientRefused(
            f"Twilio refused the SMS to {mask_number(recipient)}: error {code}, "
            f"{RECIPIENT_ERRORS[code]}"
        )
    if status in (401, 403):
        return DeliveryError(
            f"Twilio refused our credentials (HTTP {status}, error {code}); "
            "check OVERREAD_TWILIO_ACCOUNT_SID and OVERREAD_TWILIO_AUTH_TOKEN"
        )
    return DeliveryError(f"Twilio refused the SMS: HTTP {status}, error {code}")
