"""The Slack Web API client both the bot and the ``slack`` channel use.

It is slack_sdk's own :class:`~slack_sdk.WebClient`, pointed at
``SLACK_API_URL`` (Slack itself, or the tests' local fake) with a timeout.
slack_sdk's loggers are held at INFO: they log request bodies at DEBUG (the
Web API client and the ``response_url`` client alike), and message bodies
never go to the log.
"""

from __future__ import annotations

import logging
from http.client import HTTPException

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

logging.getLogger("slack_sdk").setLevel(logging.INFO)
DEFAULT_TIMEOUT_SECONDS = 10

#: What a Web API call can raise when Slack errs, refuses, is slow or unreachable.
SLACK_FAILURES = (SlackClientError, OSError, HTTPException)


def is_configured(config: dict) -> bool:
    """Whether the bot can both post (a bot token) and trust inbound requests (the secret)."""
    return bool(config.get("SLACK_BOT_TOKEN") and config.get("SLACK_SIGNING_SECRET"))


def web_client(config: dict) -> WebClient:
    """Return a Web API client for ``config``'s bot token, API base URL and timeout."""
    return WebClient(
        token=config["SLACK_BOT_TOKEN"],
        base_url=config["SLACK_API_URL"],
        timeout=config.get("SLACK_TIMEOUT_SECONDS") or DEFAULT_TIMEOUT_SECONDS,
    )


def describe_failure(method: str, error: BaseException) -> str:
    """Say what went wrong by Slack's error code or the exception's class, never by content."""
    if isinstance(error, SlackApiError):
        response = error.response
        code = response.get("error") if isinstance(response.data, dict) else None
        if not code or len(code) > 60:  # a non-JSON answer: sdk quotes the body; leave it out
            code = "unexpected answer"
        return f"Slack {method}: HTTP {response.status_code}, {code}"
    return f"Slack {method}: {error.__class__.__name__}"
