"""``POST /slack/events``: Bolt in HTTP mode behind Flask.

Slack wants an answer within 3 seconds. Bolt verifies the signature, then the
listener's ack function answers at once, in the request thread
(``process_before_response=True``); the work itself runs afterwards in a lazy
listener on :class:`LazyWork`'s threads. With ``process_before_response=False``
the ack would wait for a free thread of the same pool as the lazy work, so a
slow Slack API could delay acknowledgements past Slack's limit.

Deliveries are recorded in :class:`~portal.notifications.models.InboundMessage`
as they arrive (after the signature check); a delivery seen before, such as a
retry sent with ``X-Slack-Retry-Num``, gets an empty 200 and nothing else.
Bolt itself does not drop retries.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from threading import Lock

from flask import Blueprint, Flask, Response, current_app, request
from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.adapter.flask import SlackRequestHandler
from slack_bolt.context.respond import Respond
from slack_sdk import WebClient

from bot.slack import actions, commands
from bot.slack.client import web_client
from bot.slack.messages import ACCEPT_ACTION, COMMAND, DECLINE_ACTION, LINK_ACTION
from bot.slack.replies import Reply, apologise, send_reply
from portal.notifications.operations import first_delivery

logger = logging.getLogger(__name__)
BOLT_LOGGER = logging.getLogger("bot.slack.bolt")
BOLT_LOGGER.setLevel(logging.WARNING)  # Bolt logs a refused request's body at INFO
EXTENSION = "overread.slack"
LAZY_THREADS = 8

bp = Blueprint("slack", __name__)


@bp.post("/slack/events")
def slack_events() -> Response:
    """Hand Slack's request to Bolt; 404 when Slack is not configured."""
    bot = current_app.extensions.get(EXTENSION)
    if bot is None:
        return Response("Slack is not configured", 404, mimetype="text/plain")
    return bot.handler.handle(request)


class LazyWork(ThreadPoolExecutor):
    """The threads lazy listeners run on; :meth:`wait_idle` waits for what is under way."""

    def __init__(self, max_workers: int = LAZY_THREADS) -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix="slack-lazy")
        self._pending: set[Future] = set()
        self._lock = Lock()

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future = super().submit(fn, *args, **kwargs)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: Future) -> None:
        with self._lock:
            self._pending.discard(future)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until the work submitted so far is done; ``False`` if ``timeout`` ran out."""
        with self._lock:
            pending = list(self._pending)
        return not wait(pending, timeout).not_done


@dataclass(frozen=True)
class SlackBot:
    bolt: App
    handler: SlackRequestHandler
    work: LazyWork


def build_bot(app: Flask) -> SlackBot:
    """Make the Bolt app for ``app``: signature checks on, the listeners registered."""
    work = LazyWork()
    bolt = App(
        name="overread",
        client=web_client(app.config),  # carries the bot token, API base URL and timeout
        signing_secret=app.config["SLACK_SIGNING_SECRET"],
        token_verification_enabled=False,  # no auth.test call while the app starts
        process_before_response=True,  # see the module docstring
        listener_executor=work,
        logger=BOLT_LOGGER,
    )
    bolt.middleware(drop_repeated_deliveries)
    for action_id, decide in (
        (ACCEPT_ACTION, actions.accept),
        (DECLINE_ACTION, actions.decline),
        (LINK_ACTION, actions.send_link_again),
    ):
        bolt.action(action_id)(ack=acknowledge, lazy=[lazily(app, decide)])
    bolt.command(COMMAND)(ack=acknowledge, lazy=[lazily(app, commands.answer_command)])
    return SlackBot(bolt, SlackRequestHandler(bolt), work)


def acknowledge(ack) -> None:
    """Answer Slack at once; the lazy listener does the work."""
    ack()


def lazily(app: Flask, decide: Callable[[dict], Reply]) -> Callable[..., None]:
    """A lazy listener: ``decide`` inside an app context, then the reply sent to Slack."""

    def answer(body: dict, client: WebClient, respond: Respond) -> None:
        try:
            with app.app_context():
                reply = decide(body)
            send_reply(reply, body, client, respond)
        except Exception:  # a webhook's entry point: log it, tell the user, carry on
            logger.exception("Slack %s failed", decide.__name__)
            apologise(respond)

    answer.__name__ = answer.__qualname__ = f"{decide.__name__}_lazily"
    return answer


# --- retries and repeats --------------------------------------------------------------
def delivery_id(body: dict) -> str | None:
    """A stable id of one delivery, the same for Slack's retries of it; ``None`` if none."""
    action = (body.get("actions") or [{}])[0]
    if body.get("type") == "block_actions" and action.get("action_ts"):
        key = f"action:{action['action_ts']}:{body['user']['id']}"
    elif body.get("command") and body.get("trigger_id"):
        key = f"command:{body['trigger_id']}"
    elif body.get("event_id"):
        key = f"event:{body['event_id']}"
    else:
        return None
    return key[:100]  # InboundMessage.external_id


def drop_repeated_deliveries(
    body: dict, req: BoltRequest, next_: Callable[[], None]
) -> BoltResponse | None:
    """Global Bolt middleware, after the signature check: answer repeats with an empty 200."""
    external_id = delivery_id(body)
    if external_id is None or first_delivery("slack", external_id):
        return next_()
    retry = (req.headers.get("x-slack-retry-num") or ["none"])[0]
    logger.info("Slack delivery %s seen before (retry %s): ignored", external_id, retry)
    return BoltResponse(status=200, body="")
