"""The Slack bot: pages with Accept/Decline buttons, the /overread command, link messages.

- :mod:`bot.slack.channel`: the ``slack`` delivery channel the dispatcher sends through.
- :mod:`bot.slack.events`: ``POST /slack/events`` (Bolt), its listeners and retries.
- :mod:`bot.slack.actions`, :mod:`bot.slack.commands`: what the buttons and commands do.
- :mod:`bot.slack.messages`: every message, built by pure functions from PHI-free facts.
"""

from __future__ import annotations

import logging

from flask import Flask

from bot.slack import events
from bot.slack.channel import SlackChannel
from bot.slack.client import is_configured
from portal.extensions import csrf
from portal.notifications.channels import register_channel

logger = logging.getLogger(__name__)


def init_app(app: Flask) -> None:
    """Register ``POST /slack/events`` and the ``slack`` delivery channel.

    Both need the bot token and the signing secret; without them the endpoint
    answers 404 and ``slack`` rows stay on the log channel.
    """
    app.register_blueprint(events.bp)
    csrf.exempt(events.bp)  # Slack signs its requests; Bolt checks the signature
    if is_configured(app.config):
        register_channel(app, "slack", SlackChannel.from_config)
        app.extensions[events.EXTENSION] = events.build_bot(app)
    elif app.config.get("SLACK_BOT_TOKEN") or app.config.get("SLACK_SIGNING_SECRET"):
        # Pages whose buttons nobody could answer, or answers with nothing to post: neither.
        logger.warning(
            "Slack needs both OVERREAD_SLACK_BOT_TOKEN and OVERREAD_SLACK_SIGNING_SECRET;"
            " with one of them only, Slack stays off"
        )


def wait_idle(app: Flask, timeout: float | None = 10) -> bool:
    """Wait for the Slack work under way (lazy listeners) to end; ``False`` on timeout."""
    bot = app.extensions.get(events.EXTENSION)
    return bot is None or bot.work.wait_idle(timeout)
