"""The buttons: Accept and Decline on a page, "Send me a link" on ``/overread mine``.

Each function runs in a lazy listener, inside an app context, after Slack has
had its acknowledgement; it calls :mod:`portal.oncall.answers` and returns a
:class:`~bot.slack.replies.Reply`. A viewing link is not posted from here: the
answer queues it on the outbox's ``slack`` channel, which posts it.
"""

from __future__ import annotations

from collections.abc import Callable

from bot.slack.identity import UNKNOWN_USER, account_for, record_refusal
from bot.slack.messages import accepted_outcome, declined_outcome, taken_outcome
from bot.slack.replies import Reply
from portal import clock
from portal.auth.models import User
from portal.cases.operations import CaseTaken
from portal.errors import NotFound, OverreadError
from portal.oncall import answers


def answering(action: str, work: Callable[[User, str], Reply]) -> Callable[[dict], Reply]:
    """Wrap ``work(user, number)``: find the clicking user, refuse strangers, explain errors."""

    def answer(body: dict) -> Reply:
        slack_id = body["user"]["id"]
        number = (body.get("actions") or [{}])[0].get("value", "").strip().upper()
        user = account_for(slack_id)
        if user is None:
            record_refusal(slack_id, None, "unknown Slack user", request=action, case=number)
            return Reply.note(UNKNOWN_USER)
        try:
            return work(user, number)
        except NotFound as exc:
            record_refusal(slack_id, user, "not offered or held", request=action, case=number)
            return Reply.note(str(exc))
        except OverreadError as exc:  # not possible now (already answered, cancelled, ...)
            return Reply.note(str(exc))

    answer.__name__ = action
    return answer


def _accept(user: User, number: str) -> Reply:
    """Accept the case: the page says so in place; the link follows from the outbox."""
    try:
        answers.accept_page(user, number, via="slack")
    except CaseTaken:
        return Reply(outcome=taken_outcome(number))
    return Reply(outcome=accepted_outcome(clock.now()))


def _decline(user: User, number: str) -> Reply:
    """Decline the offer; escalation moves on."""
    answers.decline_page(user, number)
    return Reply(outcome=declined_outcome(clock.now()))


def _send_link_again(user: User, number: str) -> Reply:
    """Queue a fresh viewing link for a case the user holds."""
    answers.reissue_link(user, number, via="slack")
    return Reply.note(
        f"A new viewing link for case {number} is on its way, "
        "in your direct messages with Overread."
    )


accept = answering("accept", _accept)
decline = answering("decline", _decline)
send_link_again = answering("send_link", _send_link_again)
