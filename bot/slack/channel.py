"""The ``slack`` delivery channel: outbox rows sent as direct messages from the bot.

- ``case.page``: a DM with the case's facts and Accept/Decline buttons; the
  row keeps ``"<channel>:<ts>"`` as its provider message id.
- ``case.page_taken``: the page it refers to is edited in place to say the case
  was taken, its buttons gone (a DM if that message cannot be edited).
- ``case.link``: an ephemeral message in the DM holding the viewing link (the
  dispatcher has put the link into the body by then).
- anything else: a DM with the row's text.

Every failure is a :class:`DeliveryError`, so the dispatcher retries and, for a
page, falls back to SMS; a recipient Slack refuses for good (unknown or
deactivated user) falls back at once. Errors name Slack's error code, never the message.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.slack.client import SLACK_FAILURES, describe_failure, web_client
from bot.slack.messages import Message, note_message, page_message, taken_outcome
from portal.cases.models import Case
from portal.cases.summary import summarize
from portal.extensions import db
from portal.notifications.channels import Delivery, DeliveryError
from portal.notifications.models import Notification
from portal.oncall.pages import LINK_KIND, PAGE_KIND, TAKEN_KIND

logger = logging.getLogger(__name__)
QUIET = {"unfurl_links": False, "unfurl_media": False}  # never let Slack fetch a link
GONE = frozenset({"message_not_found", "cant_update_message", "edit_window_closed"})
#: Slack will never deliver to this recipient: no retry, the fallback channel at once.
REFUSED = frozenset({"user_not_found", "account_inactive", "user_disabled", "cannot_dm_bot"})


@contextmanager
def calling(method: str) -> Iterator[None]:
    """Turn any failure of the Web API call ``method`` into a :class:`DeliveryError`."""
    try:
        yield
    except SLACK_FAILURES as exc:
        failure = DeliveryError(describe_failure(method, exc))
        failure.permanent = _slack_error(exc) in REFUSED
        raise failure from exc


def _slack_error(exc: BaseException) -> str | None:
    if isinstance(exc, SlackApiError) and isinstance(exc.response.data, dict):
        return exc.response.data.get("error")
    return None


def split_message_id(provider_message_id: str | None) -> tuple[str, str] | None:
    """``"D123:1700000000.000100"`` -> ``("D123", "1700000000.000100")``, else ``None``."""
    channel, _, ts = (provider_message_id or "").partition(":")
    return (channel, ts) if channel and ts else None


def _end_read() -> None:
    """End the read transaction before calling Slack (on SQLite it holds the write lock)."""
    db.session.rollback()


class SlackChannel:
    name = "slack"

    def __init__(self, client: WebClient) -> None:
        self.client = client

    @classmethod
    def from_config(cls, config: dict) -> SlackChannel:
        return cls(web_client(config))

    def send(self, notification: Notification) -> Delivery:
        if notification.kind == PAGE_KIND:
            return self._post(notification, self._page_of(notification))
        if notification.kind == TAKEN_KIND:
            return self._mark_taken(notification)
        if notification.kind == LINK_KIND:
            return self._post_link(notification)
        return self._post(notification, note_message(notification.body))

    # --- building -------------------------------------------------------------------
    def _page_of(self, row: Notification) -> Message:
        """The page from the case as it stands now (its plain text if the case is gone)."""
        case = db.session.get(Case, row.case_id) if row.case_id else None
        message = page_message(summarize(case), row.subject) if case else note_message(row.body)
        _end_read()
        return message

    def _taken_update_of(self, row: Notification) -> tuple[tuple[str, str] | None, Message]:
        """Where the referred page is, and what it should now say."""
        page = db.session.get(Notification, row.refers_to_id) if row.refers_to_id else None
        case = db.session.get(Case, row.case_id) if row.case_id else None
        where = split_message_id(page.provider_message_id) if page else None
        if page is not None and case is not None:
            message = page_message(summarize(case), page.subject, taken_outcome(case.number))
        else:
            message = note_message(row.body)
        _end_read()
        return where, message

    # --- sending --------------------------------------------------------------------
    def _open_dm(self, user_id: str) -> str:
        with calling("conversations.open"):
            return self.client.conversations_open(users=user_id)["channel"]["id"]

    def _post(self, row: Notification, message: Message) -> Delivery:
        channel = self._open_dm(row.recipient)
        with calling("chat.postMessage"):
            posted = self.client.chat_postMessage(channel=channel, **message, **QUIET)
        logger.info("notification %s (%s) posted to Slack %s", row.id, row.kind, channel)
        return Delivery(self.name, f"{posted['channel']}:{posted['ts']}", "posted")

    def _mark_taken(self, row: Notification) -> Delivery:
        where, message = self._taken_update_of(row)
        if where is None:
            return self._post(row, note_message(row.body))
        channel, ts = where
        try:
            self.client.chat_update(channel=channel, ts=ts, **message)
        except SlackApiError as exc:
            if exc.response.get("error") in GONE:  # deleted, or too old to edit: say it anew
                return self._post(row, note_message(row.body))
            raise DeliveryError(describe_failure("chat.update", exc)) from exc
        except SLACK_FAILURES as exc:
            raise DeliveryError(describe_failure("chat.update", exc)) from exc
        logger.info("notification %s: page %s:%s marked taken", row.id, channel, ts)
        return Delivery(self.name, f"{channel}:{ts}", "updated")

    def _post_link(self, row: Notification) -> Delivery:
        channel = self._open_dm(row.recipient)
        with calling("chat.postEphemeral"):
            posted = self.client.chat_postEphemeral(
                channel=channel, user=row.recipient, **note_message(row.body), **QUIET
            )
        logger.info("notification %s: viewing link posted to Slack %s", row.id, channel)
        return Delivery(self.name, f"{channel}:{posted['message_ts']}", "posted ephemeral")
