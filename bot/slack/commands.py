"""``/overread mine | oncall | status CASE | help``, answered only to the user who asked.

Runs in a lazy listener inside an app context, like the buttons. Everything
but ``help`` needs a Slack user linked to an Overread account.
"""

from __future__ import annotations

from bot.slack.identity import UNKNOWN_USER, account_for, record_refusal
from bot.slack.messages import (
    COMMAND,
    help_message,
    mine_message,
    oncall_message,
    status_message,
)
from bot.slack.replies import Reply
from portal import clock
from portal.auth.models import User
from portal.cases.summary import summarize
from portal.errors import NotFound
from portal.oncall import answers, schedules


def answer_command(body: dict) -> Reply:
    """Answer one ``/overread`` invocation."""
    words = (body.get("text") or "").split()
    verb = words[0].lower() if words else "help"
    if verb not in ("mine", "oncall", "status"):
        return Reply(message=help_message())
    slack_id = body["user_id"]
    user = account_for(slack_id)
    if user is None:
        record_refusal(slack_id, None, "unknown Slack user", request=f"command {verb}")
        return Reply.note(UNKNOWN_USER)
    if verb == "mine":
        return Reply(message=_mine(user))
    if verb == "oncall":
        return Reply(message=oncall_message(schedules.board(clock.now())))
    if len(words) < 2:
        return Reply.note(f"Say which case, for example: {COMMAND} status K7Q2XM")
    return _status(slack_id, user, words[1])


def _mine(user: User) -> dict:
    return mine_message(
        [(summarize(case), case.state_enum.label) for case in answers.held_cases(user)]
    )


def _status(slack_id: str, user: User, number: str) -> Reply:
    """The case's state, for a case ``user`` may see (offered, held, or an admin's)."""
    try:
        case = answers.find_case(user, number)
    except NotFound as exc:
        record_refusal(slack_id, user, "not visible", request="command status", case=number[:12])
        return Reply.note(str(exc))
    reader = case.assignee.name if case.assignee is not None else None
    return Reply(message=status_message(summarize(case), case.state_enum.label, reader))
