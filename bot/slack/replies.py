"""What the bot answers: decided inside the app (database work), sent afterwards (Slack calls).

A :class:`Reply` is plain data, so the database transaction is over before
any Slack call starts (on SQLite even a read holds the write lock).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from slack_bolt.context.respond import Respond
from slack_sdk import WebClient

from bot.slack.client import SLACK_FAILURES
from bot.slack.messages import Message, note_message, settled_page

logger = logging.getLogger(__name__)

SORRY = "Overread could not do that just now. Please try again, or use the web page."


@dataclass(frozen=True)
class Reply:
    """``outcome`` replaces the page's buttons in place; ``message`` is shown to the user only."""

    outcome: str | None = None
    message: Message | None = None

    @classmethod
    def note(cls, text: str) -> Reply:
        return cls(message=note_message(text))


def send_reply(reply: Reply, body: dict, client: WebClient, respond: Respond) -> None:
    """Edit the page (``chat.update``) and answer through the payload's ``response_url``."""
    if reply.outcome is not None:
        settle_page(body, client, reply.outcome)
    if reply.message is not None:
        respond(**reply.message, response_type="ephemeral", replace_original=False)


def settle_page(body: dict, client: WebClient, outcome: str) -> None:
    """Replace the clicked page's buttons by ``outcome``, keeping the facts it showed."""
    container = body.get("container") or {}
    channel, ts = container.get("channel_id"), container.get("message_ts")
    message = body.get("message")
    if not (channel and ts and message) or container.get("is_ephemeral"):
        return
    number = (body.get("actions") or [{}])[0].get("value", "")
    settled = settled_page(message.get("blocks", []), number, outcome)
    client.chat_update(channel=channel, ts=ts, **settled)


def apologise(respond: Respond) -> None:
    """Tell the user their request failed (best effort: Slack may be what failed)."""
    try:
        respond(**note_message(SORRY), response_type="ephemeral", replace_original=False)
    except SLACK_FAILURES as exc:
        logger.warning("could not tell the Slack user: %s", exc.__class__.__name__)
